"""How the dashboard's cards are rendered and what a poll sends, each card by `servers/_card.html`.

Rendering all the cards through the template engine at every poll measured over the budget that
would pay for this file's complexity (docs/performance.md, "Dashboard polls"): so the cards' HTML
is kept per card shape, and a poll sends only what changed."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.functional import cached_property
from django.utils.safestring import SafeString, mark_safe

from accounts.models import User
from core.web import gateway_base_url
from servers.dashboard.cards import Card
from servers.dashboard.data import Dashboard
from servers.services import server_can_operate

# Rendering 50 cards through the template engine was most of every poll, yet a card's HTML changes
# shape only when its state, buttons or notes do. So each process keeps the HTML of the cards it
# rendered, keyed by everything the card shows except its live figures (PID, uptime, memory, CPU,
# health, restarts, sparklines: a probe or a sample changes some of them every few seconds) and the
# CSRF token (different for every response): those are rendered as slots and put in at every poll.
TEXT_FIGURES = ("pid", "uptime", "rss", "cpu", "health", "restarts")  # each in an element of its own
SPARK_FIGURES = ("memory_points", "cpu_points", "peak")  # drawn again once a minute
LIVE_FIGURES = TEXT_FIGURES + SPARK_FIGURES
_LIVE_SET = frozenset(LIVE_FIGURES)
_SLOT_MARK = f"card-slot-{secrets.token_hex(8)}-"  # random, so no profile name or model can look like one
_SLOT = re.compile(re.escape(_SLOT_MARK) + r"(\w+);")
OOB = ' hx-swap-oob="true"'  # on a card sent out of band (the slot card_oob)


def _slot(name: str) -> str:
    return f"{_SLOT_MARK}{name};"


class CardParts(NamedTuple):
    """A card's HTML cut at its slots, [html, slot name, html, ..., html], and a digest of it (the
    same in every process for the same card shape: the slots' random mark is cut out)."""

    parts: list[str]
    digest: str


_CARD_PARTS: dict[tuple[Any, ...], CardParts] = {}
_CARD_PARTS_MAX = 2000


_live_of = itemgetter(*LIVE_FIGURES)
_text_figures_of = itemgetter(*TEXT_FIGURES)
_spark_figures_of = itemgetter(*SPARK_FIGURES)


def _digest(*values: str) -> str:
    """48 bits in 8 URL-safe characters: the page sends one per card shape and figures."""
    digest = hashlib.blake2b("\x1f".join(values).encode(), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _card_key(card: Card, back_url: str, operable: bool, gateway: str) -> tuple[Any, ...]:
    text = card.text
    shown = (
        card.failure,
        card.pending,
        card.loading,
        card.can_start,
        card.can_stop,
        card.note,
        card.note_level,
        card.model_missing,
        card.node.name if card.model_missing and card.node else "",  # the download-again form names it
        operable,
        card.on_demand,
    )
    shape = tuple(value for name, value in text.items() if name not in _LIVE_SET)
    # A live figure's presence can change the card's shape ({% if t.memory_points %}): keyed by that.
    present = tuple(map(bool, _live_of(text)))
    extras = tuple((extra.template, *extra.data.items()) for extra in card.extras)
    return (card.profile.pk, back_url, gateway, shape, present, shown, extras)


def _card_parts(card: Card, *, back_url: str, user: Any, gateway: str) -> CardParts:
    """The card rendered once with a slot in place of each live figure (and of the CSRF token and
    the out-of-band marker), split at the slots."""
    slotted = {**card.text, **{name: _slot(name) for name in LIVE_FIGURES if card.text[name]}}
    context = {
        "card": card,
        "shown": slotted,
        "back_url": back_url,
        "csrf_token": _slot("csrf"),
        "card_oob": _slot("card_oob"),
        "user": user,
        "gateway_url": gateway,
    }
    parts = _SLOT.split(render_to_string("servers/_card.html", context))
    return CardParts(parts, _digest(*parts))


@dataclass(frozen=True)
class RenderedCard:
    """A card ready to be sent: its cached parts and its figures, and the version a page showing
    it holds: one digest of its shape and sparklines, one of its other figures."""

    pk: int
    parts: CardParts
    text: dict[str, Any]

    @cached_property
    def shape(self) -> str:
        return _digest(self.parts.digest, *_spark_figures_of(self.text))

    @cached_property
    def figures(self) -> str:
        return _digest(*_text_figures_of(self.text))

    def html(self, token: str, *, oob: bool = False) -> str:
        """The whole card; `oob` marks it for htmx to put in place of the one with its id."""
        parts, text = self.parts.parts, self.text
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            name = parts[i]
            if name == "csrf":
                out.append(token)
            elif name == "card_oob":
                out.append(OOB if oob else "")
            else:
                out.append(html.escape(text[name]))
            out.append(parts[i + 1])
        return "".join(out)

    def figures_html(self) -> str:
        """Only the figures, each into its element on the card the page shows (htmx out of band)."""
        return "".join(
            f'<span id="server-card-{self.pk}-{name}" hx-swap-oob="innerHTML">{html.escape(self.text[name])}</span>'
            for name in TEXT_FIGURES
        )


def render_cards(cards: Sequence[Card], *, request: HttpRequest, back_url: str) -> list[RenderedCard]:
    """The cards as `servers/_card.html` renders them, each rendered again only when its shape changed."""
    user, gateway = request.user, gateway_base_url(request)
    rendered: list[RenderedCard] = []
    operable_by_owner: dict[int | None, bool] = {}  # the answer depends only on the owner (a few of them)
    for card in cards:
        owner = card.profile.owner_id
        if owner not in operable_by_owner:
            operable_by_owner[owner] = isinstance(user, User) and server_can_operate(user=user, profile=card.profile)
        operable = operable_by_owner[owner]
        key = _card_key(card, back_url, operable, gateway)  # Stop/Restart are shown only to who may use them
        parts = _CARD_PARTS.get(key)
        if parts is None:
            parts = _card_parts(card, back_url=back_url, user=user, gateway=gateway)
            if len(_CARD_PARTS) >= _CARD_PARTS_MAX:
                _CARD_PARTS.clear()
            _CARD_PARTS[key] = parts
        rendered.append(RenderedCard(card.profile.pk, parts, card.text))
    return rendered


def cards_html(cards: Sequence[RenderedCard], *, token: str) -> SafeString:
    # Safe: the literal parts came out of the template engine, the figures are escaped.
    return mark_safe("".join(card.html(token) for card in cards))


# --- What a poll sends when the page already shows the dashboard ---
#
# The page sends back the version its last answer gave (`live_version`): a digest of the frame (the
# node groups, their cards in order, the poll interval, the CSRF secret), and per card the digests of its shape and
# of its figures. When the frame is the same, the answer is out-of-band swaps only (htmx): each
# node's banner and memory bar, the cards whose shape changed, the figures of those whose figures
# alone changed, and the new version. A page open on 50 cards with 20 running receives a few kB
# instead of 175 kB, and its buttons, focus and "Copied" marks are left alone between changes.

# The version travels in the poll's URL: gunicorn takes request lines of up to 8190 bytes
# (limit_request_line, gunicorn.conf.py), some 330 cards. A longer one is not sent: such a page
# gets the whole live part at every poll.
VERSION_MAX_LENGTH = 7_500
_DIGEST = r"[A-Za-z0-9_-]{8}"
_ENTRY = re.compile(rf"(\d{{1,18}})~({_DIGEST})~({_DIGEST})")
_FRAME = re.compile(_DIGEST)


class ShownVersion(NamedTuple):
    frame: str
    cards: dict[int, tuple[str, str]]  # pk -> (shape, figures)


def live_version(frame: str, cards: Sequence[RenderedCard]) -> str:
    """`frame.pk~shape~figures.pk~shape~figures...`: characters a URL carries as they are."""
    version = ".".join([frame, *(f"{card.pk}~{card.shape}~{card.figures}" for card in cards)])
    return version if len(version) <= VERSION_MAX_LENGTH else ""


def parse_version(value: str) -> ShownVersion | None:
    """What the page says it shows; None when it says nothing readable (it then gets everything)."""
    if not value or len(value) > VERSION_MAX_LENGTH:
        return None
    frame, *entries = value.split(".")
    cards: dict[int, tuple[str, str]] = {}
    for entry in entries:
        found = _ENTRY.fullmatch(entry)
        if found is None:
            return None
        cards[int(found[1])] = (found[2], found[3])
    return ShownVersion(frame, cards) if _FRAME.fullmatch(frame) else None


def frame_digest(dash: Dashboard, *, csrf_secret: str) -> str:
    """Everything of the live part that the out-of-band answer does not send again, and the CSRF
    secret the cards' forms carry (a new one, after signing in again, needs the cards again)."""
    groups = tuple(
        (group.node.pk, group.node.name, group.status.running, [card.profile.pk for card in group.cards])
        for group in dash.groups
    )
    return _digest(repr((dash.poll_seconds, groups)), csrf_secret)


def changed_cards_html(cards: Sequence[RenderedCard], shown: ShownVersion, *, token: str) -> SafeString:
    """The cards whose shape changed since `shown`, whole; of the others, the figures that changed."""
    out: list[str] = []
    for card in cards:
        shape, figures = shown.cards.get(card.pk, ("", ""))
        if shape != card.shape:
            out.append(card.html(token, oob=True))
        elif figures != card.figures:
            out.append(card.figures_html())
    # Safe: as in cards_html.
    return mark_safe("".join(out))
