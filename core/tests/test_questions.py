"""A question (core.questions.ask) has exactly one answer: none, or two, is a setup error that
names the signal, never a silent empty answer."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

from core.questions import ask


def test_the_one_receiver_answers_and_none_or_two_is_an_error() -> None:
    question = Signal()
    with pytest.raises(ImproperlyConfigured, match="0 receivers"):
        ask(question, n=1)

    def double(sender: Any, *, n: int, **kwargs: Any) -> int:
        return 2 * n

    def triple(sender: Any, *, n: int, **kwargs: Any) -> int:
        return 3 * n

    question.connect(double)
    assert ask(question, n=21) == 42
    question.connect(triple)
    with pytest.raises(ImproperlyConfigured, match="2 receivers"):
        ask(question, n=1)


def test_the_apps_questions_are_answered_once() -> None:
    from library.signals import model_uses_wanted, profile_folders_wanted
    from profiles.signals import server_statuses_wanted, serving_profile_wanted

    for question in (server_statuses_wanted, serving_profile_wanted, model_uses_wanted, profile_folders_wanted):
        assert len(question.receivers) == 1, question
