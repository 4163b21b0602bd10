"""One way to write sizes: decimal units in Python and in every template."""

from __future__ import annotations

from django.template import engines

from core.formatting import human_bytes


def test_sizes_are_decimal_like_macos_and_the_hub() -> None:
    assert human_bytes(812) == "812 bytes"
    assert human_bytes(6_291_456) == "6.3 MB"  # 6 MiB of weights
    assert human_bytes(2 * 1024**3) == "2.1 GB"
    assert human_bytes(1_500_000_000_000) == "1.5 TB"


def test_the_template_filter_is_the_same_function_everywhere() -> None:
    template = engines["django"].from_string("{{ size|human_bytes }} {{ missing|human_bytes }}")
    assert template.render({"size": 6_291_456}) == "6.3\xa0MB 0\xa0bytes"
