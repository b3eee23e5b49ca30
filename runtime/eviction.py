"""Idle eviction: which loaded workers to snapshot and drop from memory.

A loaded worker holds its wasm instance (its linear memory) and its dirty
tracker. The server drops one that has been idle for ``idle_timeout`` seconds,
and, while the loaded workers together hold more than ``max_memory`` bytes, the
least recently used ones first. The next invocation restores an evicted worker
from its newest snapshot plus the oplog tail, like any recovery; the snapshot
taken at eviction makes that tail empty.

``choose`` is the decision, a pure function over a description of what is
loaded (tested on hand-made lists, like recovery.plan_recovery);
``Runtime.evict`` applies it to one worker under that worker's turn, so it never
drops a worker in the middle of an invocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Resident:
    """One loaded worker as the decision sees it."""

    id: str
    #: Seconds since its last use began (an invocation, a resume, a snapshot).
    idle_s: float
    #: Linear memory of its instance (the host side is small next to it).
    bytes: int
    #: Someone holds or waits for its turn: never a candidate.
    busy: bool = False
    #: Ephemeral workers record nothing, so dropping one would lose its state.
    evictable: bool = True


def choose(residents: Sequence[Resident], idle_timeout: float | None,
           max_memory: int | None) -> list[str]:
    """The workers to evict, idle ones first, then least recently used ones until
    the rest fit in ``max_memory`` (None: no bound). Busy and ephemeral workers are
    never chosen, so the rest may stay above the bound."""
    candidates = [r for r in residents if r.evictable and not r.busy]
    victims = [r.id for r in candidates
               if idle_timeout is not None and r.idle_s >= idle_timeout]
    if max_memory is None:
        return victims
    chosen = set(victims)
    total = sum(r.bytes for r in residents if r.id not in chosen)
    for r in sorted(candidates, key=lambda r: -r.idle_s):  # least recently used first
        if total <= max_memory:
            break
        if r.id not in chosen:
            victims.append(r.id)
            chosen.add(r.id)
            total -= r.bytes
    return victims


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1048576`` -> bytes (K, M, G are powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in ("K", "M", "G") else t
    try:
        value = float(number)
    except ValueError:
        value = -1
    if not value > 0:
        raise ValueError(f"{text!r}: expected a size such as 512M or 2G")
    return int(value * scale)
