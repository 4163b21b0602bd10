"""What the gateway remembers (gateway/directory.py): used while it is fresh, checked against the
change counter when due, never trusted past TRUST_FOR, forgotten when the counter moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from django.db.models import F

from accounts.models import User
from core.changes import changes_bump
from core.models import ChangeCounter
from gateway.directory import CHECK_EVERY, TRUST_FOR, Directory
from gateway.keys import key_hash
from gateway.models import ApiKey
from gateway.routing import Caller, Target
from gateway.services import key_create, key_revoke
from profiles.models import ServerProfile

pytestmark = pytest.mark.django_db(transaction=True)


def another_process_bumps() -> None:
    """The counter moved by a change made elsewhere (no listener in this process hears of it)."""
    changes_bump()  # makes the row
    ChangeCounter.objects.update(value=F("value") + 1)


def remembered(make_user: Callable[..., User]) -> tuple[Directory, str]:
    user = make_user()
    made = key_create(user=user, name="k")
    key = ApiKey.objects.get(pk=made.key.pk)
    profile = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    directory = Directory()
    asyncio.run(directory.current())
    directory.remember(
        secret_hash=key_hash(made.secret),
        caller=Caller(user=user, key=key),
        model="Tiny",
        target=Target(profile=profile, base_url="http://127.0.0.1:9001"),
        generation=directory.generation,
    )
    return directory, key_hash(made.secret)


def test_a_fresh_memory_answers_without_reading_the_counter(make_user: Callable[..., User]) -> None:
    directory, secret_hash = remembered(make_user)
    another_process_bumps()
    assert asyncio.run(directory.current())
    assert directory.caller(secret_hash) is not None, f"checked less than {CHECK_EVERY} s ago: used as it is"
    assert directory.target("tiny") is not None, "names are found whatever their case"


def test_a_memory_too_old_to_trust_is_checked_first_and_forgotten(make_user: Callable[..., User]) -> None:
    directory, secret_hash = remembered(make_user)
    another_process_bumps()
    directory.checked_at = time.monotonic() - TRUST_FOR
    assert asyncio.run(directory.current())
    assert directory.caller(secret_hash) is None and directory.target("tiny") is None


def test_between_the_two_the_check_runs_beside_the_request(make_user: Callable[..., User]) -> None:
    directory, secret_hash = remembered(make_user)
    another_process_bumps()
    directory.checked_at = time.monotonic() - (CHECK_EVERY + TRUST_FOR) / 2

    async def ask() -> bool:
        fresh = await directory.current()
        kept = directory.caller(secret_hash) is not None
        assert directory.checking is not None
        await directory.checking
        return fresh and kept

    assert asyncio.run(ask()), "the request was answered from memory, not made to wait"
    assert directory.caller(secret_hash) is None, "and the check that ran beside it forgot it"


def test_an_unchanged_counter_keeps_the_memory(make_user: Callable[..., User]) -> None:
    directory, secret_hash = remembered(make_user)
    directory.checked_at = time.monotonic() - TRUST_FOR
    assert asyncio.run(directory.current())
    assert directory.caller(secret_hash) is not None


def test_what_was_read_before_a_change_is_not_kept(make_user: Callable[..., User]) -> None:
    directory, _ = remembered(make_user)
    seen = directory.generation
    another_process_bumps()
    directory.checked_at = float("-inf")
    asyncio.run(directory.current())
    caller = Caller(user=make_user(), key=None)
    target = Target(profile=ServerProfile.objects.get(), base_url="http://127.0.0.1:9001")
    directory.remember(secret_hash="x" * 64, caller=caller, model="tiny", target=target, generation=seen)
    assert directory.caller("x" * 64) is None


def test_a_change_made_in_this_process_is_forgotten_at_once(make_user: Callable[..., User]) -> None:
    from gateway.directory import directory as shared

    directory, secret_hash = remembered(make_user)
    shared.callers[secret_hash] = directory.callers[secret_hash]
    key = ApiKey.objects.get()
    key_revoke(key=key, by=key.user)
    assert shared.caller(secret_hash) is None, "the revoking process does not wait for its next check"


def test_an_expired_key_is_not_answered_from_memory(make_user: Callable[..., User]) -> None:
    directory, secret_hash = remembered(make_user)
    caller = directory.callers[secret_hash]
    assert caller.key is not None
    caller.key.expires_at = caller.key.created_at
    assert directory.caller(secret_hash) is None
