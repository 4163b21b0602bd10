"""A question a lower app asks of the app above it, which it cannot import (layers run one way):
a Django signal whose one receiver answers. The signal's comment names who answers it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal


def ask(question: Signal, **kwargs: Any) -> Any:
    """The answer of the one receiver connected to `question`."""
    answers = [answer for _, answer in question.send(sender=None, **kwargs)]
    if len(answers) != 1:
        raise ImproperlyConfigured(
            f"{len(answers)} receivers answer {question!r}: expected one (is `servers` installed?)"
        )
    return answers[0]
