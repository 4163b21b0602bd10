"""The servers dashboard, the server page, its log and the quick chat.

Every view reads the database (the supervisor's records) and files the supervisor writes; none
of them spawns, signals or waits on a model server. The one exception, on purpose, is the quick
chat, which sends the user's prompt to the running server with a timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import FileResponse, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from accounts.types import AuthedRequest
from nodes.status import supervisor_status
from profiles.argv import command_line
from profiles.models import Engine, Kind, ServerProfile
from servers.addresses import listen_address
from servers.chat import CHAT_MAX_TOKENS, ChatError, ChatReply, chat_complete, chat_url
from servers.dashboard.data import Dashboard, card_for, dashboard_data
from servers.dashboard.render import (
    RenderedCard,
    ShownVersion,
    cards_html,
    changed_cards_html,
    frame_digest,
    live_version,
    parse_version,
    render_cards,
)
from servers.logs import server_log_path
from servers.logtail import read_log
from servers.models import Server, ServerEvent
from servers.promptfit import chat_answer_tokens, prompt_fit
from servers.services import ServerActionRefused, server_restart, server_start, server_stop
from servers.states import UP

EVENTS_SHOWN = 50


ACTIONS: dict[str, tuple[Callable[..., Server], str]] = {
    "start": (server_start, "Start requested for {name}."),
    "stop": (server_stop, "Stop requested for {name}."),
    "restart": (server_restart, "Restart requested for {name}."),
}


class LogQuery(forms.Form):
    """Where the log poller stopped reading: an offset into the file and the file's inode."""

    offset = forms.IntegerField(required=False, min_value=0, max_value=2**62)
    inode = forms.IntegerField(required=False, min_value=0, max_value=2**64)


class ChatForm(forms.Form):
    prompt = forms.CharField(max_length=8000, widget=forms.Textarea(attrs={"rows": 3}))


@require_GET
def dashboard(request: AuthedRequest) -> HttpResponse:
    """The page, or (for htmx's poll) its live part: whole when its frame changed, else only what
    changed since the version the page sent (`v`)."""
    dash, back_url = dashboard_data(), reverse("servers:dashboard")
    rendered = {group.node.pk: render_cards(group.cards, request=request, back_url=back_url) for group in dash.groups}
    token = get_token(request)  # one masked token for every card form of this answer
    frame = frame_digest(dash, csrf_secret=request.META["CSRF_COOKIE"])  # get_token set it
    version = live_version(frame, [card for cards in rendered.values() for card in cards])  # what the page will show
    if not request.htmx:
        _fill_cards(dash, rendered, token)
        context = {"dash": dash, "version": version, "has_models": not dash.cards and _has_local_models()}
        return render(request, "servers/dashboard.html", context)
    shown = parse_version(request.GET.get("v", ""))
    if shown is not None and shown.frame == frame:
        response = _live_changes(dash, rendered, shown, token, version)
    else:
        _fill_cards(dash, rendered, token)
        # The live part's templates use nothing of the request (the cards' CSRF token is put in by
        # cards_html): rendered without the context processors, which every poll would run.
        response = HttpResponse(render_to_string("servers/_live.html", {"dash": dash, "version": version}))
    # Visible in the browser's network panel, and how the benchmark tells cache hits from misses.
    response["Server-Timing"] = f'sparklines;desc="{"cached" if dash.series_cached else "computed"}"'
    return response


def _fill_cards(dash: Dashboard, rendered: dict[int, list[RenderedCard]], token: str) -> None:
    for group in dash.groups:
        group.html = cards_html(rendered[group.node.pk], token=token)


def _live_changes(
    dash: Dashboard, rendered: dict[int, list[RenderedCard]], shown: ShownVersion, token: str, version: str
) -> HttpResponse:
    """Out-of-band swaps only: the node summaries, the cards and figures that changed, the version."""
    changes = mark_safe("".join(changed_cards_html(cards, shown, token=token) for cards in rendered.values()))
    response = HttpResponse(
        render_to_string("servers/_live_changes.html", {"dash": dash, "changes": changes, "version": version})
    )
    response["HX-Reswap"] = "none"
    return response


@require_GET
def server_detail(request: AuthedRequest, profile_id: int) -> HttpResponse:
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    return render(request, "servers/server.html", _page_context(profile))


@require_GET
def server_state(request: AuthedRequest, profile_id: int) -> HttpResponse:
    """The server page's live part (polled): card, state facts and, out of band, the timeline."""
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    return render(request, "servers/_server_state.html", {**_state_context(profile), "oob": True})


@require_GET
def server_card(request: AuthedRequest, profile_id: int) -> HttpResponse:
    """One server's card, polling itself: other pages (the profile page) show it with its buttons."""
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    card = card_for(profile)
    back = _safe_url(request, request.GET.get("next", ""))
    context = {"card": card, "back_url": back, "poll_seconds": 1 if card.busy else 5}
    return render(request, "servers/_card_poll.html", context)


@require_POST
def server_action(request: AuthedRequest, profile_id: int, action: str) -> HttpResponse:
    """Start, stop or restart: record the intent; htmx gets the updated card, others a redirect."""
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    service, done = ACTIONS[action]
    try:
        service(profile=profile, by=request.user)
        note, level = done.format(name=profile.name), messages.SUCCESS
    except ServerActionRefused as exc:
        note, level = str(exc), messages.WARNING
    back = _safe_next(request)
    if request.htmx:
        card = card_for(profile)
        card.note, card.note_level = note, messages.DEFAULT_TAGS[level]
        response = render(request, "servers/_card.html", {"card": card, "back_url": back})
        if level == messages.SUCCESS:  # let the card list poll at once (and then fast)
            response["HX-Trigger"] = "servers-changed"
        return response
    messages.add_message(request, level, note)
    return redirect(back)


@require_GET
def server_log(request: AuthedRequest, profile_id: int) -> HttpResponse:
    """What the log gained since `offset` (htmx poll): the next poller plus the new text, out of band."""
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    query = LogQuery(request.GET)
    if not query.is_valid():
        return HttpResponseBadRequest("Bad query: offset and inode are whole numbers of at least 0.")
    chunk = read_log(
        server_log_path(profile.pk), offset=query.cleaned_data["offset"], inode=query.cleaned_data["inode"]
    )
    return render(request, "servers/_log_poll.html", {"profile": profile, "chunk": chunk, "oob": True})


@require_GET
def server_log_download(request: AuthedRequest, profile_id: int) -> HttpResponseBase:
    profile = get_object_or_404(ServerProfile, pk=profile_id)
    try:
        handle = server_log_path(profile.pk).open("rb")
    except FileNotFoundError:
        messages.info(request, f"{profile.name} has no log yet: it appears when the server first starts.")
        return redirect("servers:detail", profile_id=profile.pk)
    filename = f"{slugify(profile.name) or 'server'}-{profile.pk}.log"
    return FileResponse(handle, as_attachment=True, filename=filename, content_type="text/plain; charset=utf-8")


@require_POST
def server_chat(request: AuthedRequest, profile_id: int) -> HttpResponse:
    """Send the prompt to the running server (server side, with a timeout) and show its answer."""
    profile = get_object_or_404(ServerProfile.objects.select_related("node"), pk=profile_id)
    form = ChatForm(request.POST)
    reply: ChatReply | None = None
    error = ""
    server = Server.objects.filter(profile=profile).first()
    if not form.is_valid():
        error = "Write a prompt first (at most 8000 characters)."
    elif not profile.node.is_local:  # its server listens on that Mac's loopback, not on this one's
        error = f"{profile.name} runs on node {profile.node.name}: chat with it on that node's page or through /v1/."
    elif profile.kind in (Kind.EMBEDDINGS, Kind.RERANK):
        error = f"{profile.name} is a {profile.kind} model: it does not chat (try it in the box on this page)."
    elif server is None or server.state not in UP:
        state = server.get_state_display().lower() if server else "stopped"
        error = f"{profile.name} is {state}: start it first, then chat."
    elif refusal := (fit := prompt_fit(model=profile.model, text=form.cleaned_data["prompt"])).refusal():
        error = refusal
    else:
        try:
            reply = chat_complete(
                url=chat_url(*listen_address(server)),
                prompt=form.cleaned_data["prompt"],
                max_tokens=fit.answer_tokens(CHAT_MAX_TOKENS),
                model=profile.model if profile.engine == Engine.MLX_VLM else "",
            )
        except ChatError as exc:
            error = str(exc)
    context = {"profile": profile, "reply": reply, "chat_error": error, "chat_form": form}
    if request.htmx:
        return render(request, "servers/_chat_result.html", context)
    return render(request, "servers/server.html", {**_page_context(profile), **context})


# --- helpers ---


def _state_context(profile: ServerProfile) -> dict[str, Any]:
    card = card_for(profile)
    events = (
        ServerEvent.objects.filter(server__profile=profile).select_related("by")[:EVENTS_SHOWN]
        if card.server.pk
        else ServerEvent.objects.none()
    )
    return {
        "profile": profile,
        "card": card,
        "events": events,
        "supervisor": supervisor_status(node=profile.node),
        "command_line": command_line(profile),
        "back_url": reverse("servers:detail", args=[profile.pk]),
        "poll_seconds": 1 if card.busy else 5,
    }


def _page_context(profile: ServerProfile) -> dict[str, Any]:
    return {
        **_state_context(profile),
        "log": read_log(server_log_path(profile.pk)),
        "chat_form": ChatForm(),
        "chat_max_tokens": chat_answer_tokens(model=profile.model, cap=CHAT_MAX_TOKENS),
    }


def _safe_next(request: AuthedRequest) -> str:
    return _safe_url(request, request.POST.get("next", ""))


def _safe_url(request: AuthedRequest, target: str) -> str:
    """`target` when it stays on this site, else the dashboard."""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("servers:dashboard")


def _has_local_models() -> bool:
    """Any model on this machine (for the empty dashboard's hint); read only when there is no profile."""
    from library.local import cached_repo_ids
    from library.models import Download, DownloadState

    return Download.objects.filter(state=DownloadState.COMPLETED).exists() or bool(cached_repo_ids())
