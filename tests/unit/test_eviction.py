"""The eviction decision (runtime/eviction.py) on hand-made lists of loaded workers."""

from __future__ import annotations

import pytest

from golemish.runtime.eviction import Resident, choose, parse_size

MIB = 1 << 20


def test_idle_workers_go_busy_and_ephemeral_ones_stay():
    rs = [Resident("a", 70, MIB), Resident("b", 10, MIB), Resident("c", 99, MIB, busy=True),
          Resident("d", 99, MIB, evictable=False)]
    assert choose(rs, 60, None) == ["a"]
    assert choose(rs, None, None) == []


def test_over_max_memory_the_least_recently_used_go_first_until_the_rest_fit():
    rs = [Resident("new", 1, 2 * MIB), Resident("old", 30, 2 * MIB), Resident("mid", 5, 2 * MIB)]
    assert choose(rs, None, 5 * MIB) == ["old"]
    assert choose(rs, None, 3 * MIB) == ["old", "mid"]
    assert choose(rs, None, 6 * MIB) == []
    # an idle victim's memory counts as freed before the LRU pass
    assert choose(rs, 20, 4 * MIB) == ["old"]


def test_busy_workers_are_never_chosen_even_over_the_bound():
    rs = [Resident("a", 50, 4 * MIB, busy=True), Resident("b", 1, MIB)]
    assert choose(rs, None, 2 * MIB) == ["b"]


def test_sizes():
    assert parse_size("512M") == 512 * MIB and parse_size("2G") == 2 << 30
    assert parse_size("1.5MiB") == int(1.5 * MIB) and parse_size("4096") == 4096
    for bad in ("", "lots", "-1M", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
