"""Pages as a person sees them in a real Chromium: at phone width (390 px) nothing is wider than
the screen (the new-profile form, the Models table with its actions, the server page with its
timeline, the profiles, API keys and usage tables), and every badge colour pair reads at WCAG AA
contrast (4.5:1) in light and in dark."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from huggingface_hub import snapshot_download

from accounts.models import User
from conftest import browser_login, screenshot
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerEvent, ServerState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TINY = "mlx-community/Tiny-Llama-4bit"

# Elements that stick out of the viewport, except those clipped by an ancestor that hides its
# overflow (ellipsis text): scrollable ancestors do not excuse them, that is sideways scrolling.
TOO_WIDE_JS = """() => {
  const width = document.documentElement.clientWidth;
  const clipped = (el) => {
    for (let a = el.parentElement; a; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === "hidden" || o === "clip") return a.getBoundingClientRect().right <= width + 1;
    }
    return false;
  };
  const wide = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if ((r.right > width + 1 || r.left < -1) && !clipped(el)) {
      wide.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
    for (const box of [el]) {
      const o = getComputedStyle(box).overflowX;
      if ((o === "auto" || o === "scroll") && box.scrollWidth > box.clientWidth + 1) {
        wide.push(`${box.tagName.toLowerCase()}.${box.className} scrolls sideways (${box.scrollWidth} > ${box.clientWidth})`);
      }
    }
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 15)};
}"""

# Every badge class the style sheets define, on a badge, in the page's own colours: the contrast
# of its text on its background (a translucent background laid over the page's).
CONTRAST_JS = """() => {
  const names = new Set();
  const collect = (rules) => { for (const rule of rules) {
    if (rule.cssRules) collect(rule.cssRules);
    for (const m of (rule.selectorText || "").matchAll(/\\.((?:badge|state)-[a-z-]+)/g)) names.add(m[1]);
  } };
  for (const sheet of document.styleSheets) { try { collect(sheet.cssRules); } catch (e) {} }
  names.add("");
  const rgba = (text) => { const v = text.match(/[\\d.]+/g).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3]));
  const lum = (rgb) => { const [r, g, b] = rgb.map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const page = rgba(getComputedStyle(document.body).backgroundColor);
  const result = {};
  for (const name of names) {
    const badge = document.createElement("span");
    badge.className = `badge ${name}`;
    badge.textContent = "running";
    document.querySelector("main").appendChild(badge);
    const style = getComputedStyle(badge);
    const back = over(rgba(style.backgroundColor), page);
    const text = over(rgba(style.color), back);
    const [a, b] = [lum(text), lum(back)].sort((x, y) => y - x);
    result[name || "badge"] = Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100;
    badge.remove();
  }
  return result;
}"""


@pytest.fixture
def seeded(approved_user: User, hub: Any) -> ServerProfile:
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)  # a row with actions on the Models page
    profile = ServerProfile.objects.create(name="qwen3-4b-instruct-long-name", model=TINY, port=20_001)
    server = Server.objects.create(
        profile=profile,
        state=ServerState.FATAL,
        desired_state=DesiredState.RUNNING,
        last_exit_code=1,
        last_error="Repository not found: mlx-community/Tiny-Llama-4bit is not downloaded any more",
    )
    for before, after in (("stopped", "starting"), ("starting", "backoff"), ("backoff", "fatal")):
        ServerEvent.objects.create(
            server=server,
            kind="transition",
            from_state=before,
            to_state=after,
            cause="exit",
            message="The process exited with code 1 before answering GET /health: "
            "FileNotFoundError: /home/someone/.cache/huggingface/hub/models--mlx-community--Tiny-Llama-4bit",
        )
    return profile


def test_phone_width_nothing_wider_than_the_screen(
    page: Any, live_server: Any, approved_user: User, seeded: ServerProfile
) -> None:
    browser_login(page, live_server.url, approved_user.email)
    page.set_viewport_size({"width": 390, "height": 844})
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, path in (
            ("profile-form", f"/profiles/new/?model={TINY}"),
            ("profile-page", f"/profiles/{seeded.pk}/"),
            ("models", "/models/"),
            ("server-page", f"/servers/{seeded.pk}/"),
            ("dashboard", "/servers/"),
            ("profiles", "/profiles/"),
            ("api-keys", "/accounts/keys/"),
            ("usage", "/usage/"),
        ):
            answer = page.goto(f"{live_server.url}{path}")
            assert answer is not None and answer.status == 200, f"{path} answered {answer and answer.status}"
            page.wait_for_load_state("networkidle")
            layout = page.evaluate(TOO_WIDE_JS)
            screenshot(page, f"phone-{name}-{scheme}")
            assert layout["scrollWidth"] <= layout["width"], f"{path} scrolls sideways: {layout}"
            assert not layout["wide"], f"{path} at 390 px: {layout['wide']}"
    page.emulate_media(color_scheme="light")
    page.goto(f"{live_server.url}/models/")
    row = page.locator(f'tr[data-model="{TINY}"]')
    assert row.locator("button", has_text="Delete").is_visible()  # the actions are reachable


def test_every_badge_reads_at_wcag_aa_in_light_and_dark(page: Any, live_server: Any, approved_user: User) -> None:
    browser_login(page, live_server.url, approved_user.email)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{live_server.url}/servers/")
        ratios = page.evaluate(CONTRAST_JS)
        assert {"badge-ok", "badge-warn", "badge-bad", "badge-info", "state-running", "state-fatal"} <= set(ratios)
        low = {name: ratio for name, ratio in ratios.items() if ratio < 4.5}
        assert not low, f"{scheme}: badges below 4.5:1: {low}"
