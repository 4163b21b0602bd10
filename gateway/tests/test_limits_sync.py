"""Budgets across nodes: each node's store publishes its counts to the shared database and takes in
the others', so a budget spent on one machine is refused on the other after one sync."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from accounts.limits import LimitSet
from gateway.limits.admission import Admission, CallerLimits, Refusal, admit, settle
from gateway.limits.standing import standing_read
from gateway.limits.store import Store
from gateway.limits.sync import counts_prune, counts_share
from gateway.models import NodeCount
from nodes.models import Node

pytestmark = pytest.mark.django_db
NOON = datetime(2026, 12, 8, 12, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp()
ANN = CallerLimits(user_id=3, key_id=None, person=LimitSet(tokens_per_day=1000))


def test_a_budget_spent_on_one_node_is_refused_on_the_other_after_a_sync(tmp_path: Path) -> None:
    studio, mini = Store(tmp_path / "studio.sqlite3"), Store(tmp_path / "mini.sqlite3")
    Node.objects.create(name="studio"), Node.objects.create(name="mini")
    spent = admit(ANN, at=studio, now=NOON)
    assert isinstance(spent, Admission)
    settle(spent, prompt_tokens=600, completion_tokens=500, at=studio, now=NOON)
    assert isinstance(admit(ANN, at=mini, now=NOON + 1), Admission)  # not synced yet: the lag
    assert counts_share(at=studio, now=NOON + 2, node="studio") == 3  # minute, day, month
    counts_share(at=mini, now=NOON + 2, node="mini")
    refused = admit(ANN, at=mini, now=NOON + 3)
    assert isinstance(refused, Refusal) and refused.limit == "tokens_per_day"
    (day,) = standing_read("u3", ANN.person, at=mini, now=NOON + 3)
    assert day.used == 1100
    counts_share(at=mini, now=NOON + 4, node="mini")  # again: the others' sums replace, never add up
    assert standing_read("u3", ANN.person, at=mini, now=NOON + 4)[0].used == 1100


def test_one_machine_shares_nothing_and_old_spans_are_forgotten(tmp_path: Path) -> None:
    alone = Store(tmp_path / "alone.sqlite3")
    assert list(Node.objects.values_list("name", flat=True)) in ([], [settings.MLXM_NODE_NAME])
    settle(admit(ANN, at=alone, now=NOON), prompt_tokens=5, completion_tokens=5, at=alone, now=NOON)  # type: ignore[arg-type]
    assert counts_share(at=alone, now=NOON) == 0 and not NodeCount.objects.exists()
    counts_prune(at=alone, now=NOON + 2 * 3600)
    rows = alone.connection().execute("SELECT span FROM usage ORDER BY span").fetchall()
    assert rows == [("M",), ("d",)]  # the minute went after an hour
