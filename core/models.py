"""What several apps' models share."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Self

from django.db import models
from django.db.models.base import ModelState
from django.db.models.signals import ModelSignal, post_init, pre_init


class QuickLoadModel(models.Model):
    """A model whose rows load from the database without `Model.__init__`.

    The dashboard loads every profile with its server at each poll (70 instances for 50 profiles),
    and `__init__` with `only()` was half of that query's time: it walks every field of the model
    for each row. Loading puts the columns read straight into the instance's `__dict__`, which is
    what `__init__` ends up doing (a column not read stays deferred, loaded on first use), and sets
    the same state. Not when anything listens to `pre_init` or `post_init` for the model: those
    receivers expect `__init__`, so it is used then (and for any loading option a later Django adds).
    """

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Collection[Any], **options: Any) -> Self:
        if options or _listened(pre_init, cls) or _listened(post_init, cls):
            return super().from_db(db, field_names, values, **options)
        row = cls.__new__(cls)
        row.__dict__.update(zip(field_names, values, strict=True))
        row._state = ModelState()
        row._state.adding = False
        row._state.db = db
        return row


def _listened(signal: ModelSignal, sender: type[models.Model]) -> bool:
    # `has_listeners` alone looks the sender up in a weak dictionary, for every row: with no receiver
    # at all (the usual case) the plain list answers first.
    return bool(signal.receivers) and signal.has_listeners(sender)
