"""--filters parsed and resolved per layer (filters.py)."""

import pytest

from filtervis.errors import SpecError
from filtervis.filters import parse_filters


@pytest.mark.parametrize("text, count, expected", [
    ("all", 4, [0, 1, 2, 3]),
    ("0-3", 10, [0, 1, 2, 3]),
    ("3,7,9", 10, [3, 7, 9]),
    ("0-2,12", 13, [0, 1, 2, 12]),
    ("5, 1-2 ,5", 10, [1, 2, 5]),
])
def test_parse_filters_resolves_indices(text, count, expected):
    assert parse_filters(text).resolve(count, seed=0) == expected


@pytest.mark.parametrize("text", ["", "a", "3-", "-3", "1,,2", "5-2", "random:", "random:0", "random:x", "1.5"])
def test_parse_filters_rejects_malformed(text):
    with pytest.raises(SpecError, match="--filters"):
        parse_filters(text)


def test_random_filters_are_distinct_sorted_and_seeded():
    spec = parse_filters("random:5")
    first = spec.resolve(50, seed=3)
    assert first == sorted(set(first)) and len(first) == 5 and max(first) < 50
    assert spec.resolve(50, seed=3) == first
    assert spec.resolve(50, seed=4) != first


def test_resolve_rejects_index_past_count_naming_layer():
    with pytest.raises(SpecError, match=r"filter index 64 .* 64 filters of layer 'conv' \(valid: 0-63\)"):
        parse_filters("60-64").resolve(64, 0, "conv")
    with pytest.raises(SpecError, match="random:8 or fewer"):
        parse_filters("random:9").resolve(8, 0, "conv")
