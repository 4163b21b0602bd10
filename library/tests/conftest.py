from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[Path]:
    """Every library test starts and ends with an empty Hugging Face cache."""
    cache = Path(settings.HF_HUB_CACHE)
    shutil.rmtree(cache, ignore_errors=True)
    yield cache
    shutil.rmtree(cache, ignore_errors=True)
