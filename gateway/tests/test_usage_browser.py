"""The Usage page in real Chromium: its "By person" and "By model" tables show every column at
1280 px and on a phone, light and dark, and muted text stays readable (WCAG AA) in the dark."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import User
from conftest import browser_login, hidden_sideways, screenshots
from gateway.models import GatewayApi
from gateway.services import usage_record
from profiles.models import ServerProfile

pytestmark = pytest.mark.browser

# The lowest contrast of the page's muted text against what is behind it (its first opaque
# background, translucent ones blended in), over every visible element drawn in the muted colour.
MUTED_CONTRAST_JS = """() => {
  const rgba = s => (s.match(/[\\d.]+/g) || []).map(Number).concat([1]).slice(0, 4);
  const lum = ([r, g, b]) => { const f = c => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const behind = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let [r, g, b] = layers.length && layers[layers.length - 1][3] >= 1 ? layers.pop() : [255, 255, 255];
    for (const [lr, lg, lb, a] of layers.reverse()) { r = lr * a + r * (1 - a); g = lg * a + g * (1 - a); b = lb * a + b * (1 - a); }
    return [r, g, b];
  };
  const muted = rgba(getComputedStyle(document.documentElement).getPropertyValue("--pico-muted-color").trim()
    .replace(/^#(..)(..)(..)$/, (_, r, g, b) => `rgb(${parseInt(r, 16)},${parseInt(g, 16)},${parseInt(b, 16)})`));
  let worst = [99, ""];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || ![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const c = rgba(getComputedStyle(el).color);
    if (c.slice(0, 3).join() !== muted.slice(0, 3).join()) continue;
    const [a, b] = [lum(c), lum(behind(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst[0]) worst = [ratio, el.outerHTML.slice(0, 120)];
  }
  return worst;
}"""


def test_usage_tables_fit_and_muted_text_is_readable_in_the_dark(
    live_server: Any, page: Any, transactional_db: Any, make_user: Callable[..., User]
) -> None:
    admin = make_user("administrator.of.this.mac@example.com", admin=True)
    profile = ServerProfile.objects.create(name="mlx-community-qwen3-coder-30b-a3b-instruct", model="/m", port=9001)
    for n in range(4):
        person = make_user(f"someone.with.a.long.address.number{n}@research-department.example.org")
        usage_record(
            user=person, profile=profile, model_name=profile.name, api=GatewayApi.CHAT, status=200,
            prompt_tokens=123_456, completion_tokens=98_765, duration_ms=1234.0, tokens_per_second=87.6,
        )  # fmt: skip
    browser_login(page, live_server.url, admin.email)
    page.goto(f"{live_server.url}/usage/")
    screenshots(page, "usage-by-person")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            for table in page.locator(".usage-groups .usage-table").all():
                assert table.is_visible()
            for n in (1, 2):
                hidden = hidden_sideways(page, f".usage-groups article:nth-child({n}) .usage-table")
                assert hidden <= 0, f"the table {n} hides {hidden}px at {width} px ({scheme})"
    page.emulate_media(color_scheme="dark")
    for path in ("/usage/", f"/profiles/{profile.pk}/"):  # the profile page: muted text in card headers
        page.goto(live_server.url + path)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            ratio, where = page.evaluate(MUTED_CONTRAST_JS)
            assert ratio >= 4.5, f"muted text at {ratio:.2f}:1 on {path} at {width} px: {where}"
