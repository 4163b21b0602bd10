"""The throwaway PostgreSQL cluster the tests use (testing/postgres.py) is a real server."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.debian


def test_the_cluster_answers_and_makes_databases(postgres_cluster: Any) -> None:
    name = f"check_{uuid.uuid4().hex[:8]}"
    url = postgres_cluster.create_database(name)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database(), inet_server_addr()::text, current_setting('server_version')")
        database, address, version = row.fetchone() or ("", "", "")
    assert (database, address) == (name, "127.0.0.1/32")
    assert int(version.split(".")[0]) >= 13, version
