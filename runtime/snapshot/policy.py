"""When to snapshot: every N invocations, every T seconds, or adaptively.

The adaptive policy bounds recovery time. Replaying the tail of the oplog
costs about what running those invocations cost, so we keep an estimate of the
work done since the last snapshot and snapshot when it reaches an interval τ
(inside one long call of a stackful worker the estimate is also at least
REPLAY_S_PER_CALL for each host call: replay reads and matches every entry,
which costs more than a clock read made live):

    τ = max(min(sqrt(2·C·M), target), C / max_overhead)

where C is the measured cost of a snapshot and M the assumed mean time between
crashes. sqrt(2·C·M) is Young's optimal checkpoint interval (Daly refined it);
``target`` caps the expected replay of the tail, which is what users feel as
recovery time; ``C / max_overhead`` keeps snapshotting from eating more than
that fraction of throughput when snapshots are expensive (large, dirty memory).

C is a moving estimate, never one sample: a recovered worker starts from the
median cost of its kept snapshots, and every snapshot moves the estimate
(exponential average). Because a high estimate is only corrected by taking
another snapshot, the overhead bound may stretch τ past the target for at most
``max_tail_invocations`` invocations: a tail that long whose replay would take
longer than the target is snapshotted (and C measured again) whatever C says.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ArgumentError


@dataclass(frozen=True)
class SnapshotPolicy:
    kind: str = "adaptive"          # adaptive | every | calls | interval | off
    every: int = 0                  # invocations, for "every"; host calls, for "calls"
    interval_s: float = 0.0         # seconds, for "interval"
    target_tail_s: float = 0.05     # adaptive: bound on the tail's replay time
    max_overhead: float = 0.05      # adaptive: share of time snapshots may take
    mtbf_s: float = 3600.0          # adaptive: assumed mean time between crashes
    #: adaptive: invocations after which a tail whose replay exceeds the target is
    #: snapshotted even if the overhead bound would wait longer.
    max_tail_invocations: int = 64

    @classmethod
    def parse(cls, text: str) -> SnapshotPolicy:
        """``adaptive[:TARGET_S[:MAX_TAIL_INVOCATIONS]]``, ``every:N``, ``calls:N``,
        ``interval:SECONDS`` or ``off``."""
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "adaptive":
                target, _, count = arg.partition(":")
                policy = cls("adaptive", target_tail_s=float(target) if target else 0.05,
                             max_tail_invocations=int(count) if count else 64)
                if policy.target_tail_s >= 0 and policy.max_tail_invocations >= 1:
                    return policy
            if kind == "every" and int(arg) >= 1:
                return cls("every", every=int(arg))
            if kind == "calls" and int(arg) >= 1:
                return cls("calls", every=int(arg))
            if kind == "interval" and float(arg) > 0:
                return cls("interval", interval_s=float(arg))
            if kind == "off" and not arg:
                return cls("off")
        except ValueError:
            pass
        raise ArgumentError(f"bad snapshot policy {text!r}: use adaptive[:SECONDS[:N]], "
                            "every:N, calls:N, interval:SECONDS or off")

    def __str__(self) -> str:
        if self.kind == "every":
            return f"every:{self.every}"
        if self.kind == "calls":
            return f"calls:{self.every}"
        if self.kind == "interval":
            return f"interval:{self.interval_s:g}"
        if self.kind == "adaptive":
            count = "" if self.max_tail_invocations == 64 else f":{self.max_tail_invocations}"
            return f"adaptive:{self.target_tail_s:g}{count}"
        return "off"


#: Replaying one recorded host call: reading, decoding and matching its entry. 8 µs on
#: the 2-core machine (30,000 clock reads replayed in 0.24 s), against ~3 µs to make
#: the call live (10,000 in 31 ms): counted by time alone, a 10,000-call invocation
#: stayed under a 50 ms target live and then took ~80 ms to replay.
REPLAY_S_PER_CALL = 8e-6


class PolicyState:
    """What the policy has seen since the last snapshot of one worker."""

    #: Weight of a new sample in the moving estimate of the snapshot cost.
    ALPHA = 0.3

    def __init__(self, policy: SnapshotPolicy, *, tail_s: float = 0.0, tail_invocations: int = 0,
                 snapshot_cost_s: float | None = None, last_snapshot_wall: float | None = None,
                 snapshot_costs: Iterable[float] = ()) -> None:
        """``snapshot_costs``: measured costs of earlier snapshots (a recovered worker's
        kept ones); their median seeds the estimate, so one outlier cannot set it."""
        self.policy = policy
        self.tail_s = tail_s
        self.tail_invocations = tail_invocations
        costs = [c for c in snapshot_costs if c >= 0]
        self.cost_s = statistics.median(costs) if costs else snapshot_cost_s
        self.last_wall = last_snapshot_wall if last_snapshot_wall is not None else time.time()
        #: perf_counter() at the last snapshot: work before it is not in the tail.
        self.last_perf = 0.0

    def interval_s(self) -> float:
        """The adaptive τ for the current cost estimate."""
        p = self.policy
        if self.cost_s is None:  # no snapshot measured yet: aim at the target alone
            return p.target_tail_s
        c = self.cost_s
        return max(min(math.sqrt(2 * c * p.mtbf_s), p.target_tail_s), c / p.max_overhead)

    def invoked(self, seconds: float) -> None:
        self.tail_s += seconds
        self.tail_invocations += 1

    def midcall_due(self, in_call_s: float, calls: int, in_call: int) -> bool:
        """Inside an invocation of a stackful worker: snapshot at this host call?

        ``calls``: live host calls since the last mid-call snapshot (``calls:N``);
        ``in_call_s`` and ``in_call``: the time and the host calls of this invocation
        since it began or was last snapshotted (earlier invocations are in tail_s)."""
        p = self.policy
        if p.kind == "calls":
            return calls >= p.every
        if p.kind == "adaptive":
            replay_s = max(in_call_s, in_call * REPLAY_S_PER_CALL)
            return self.tail_s + replay_s >= self.interval_s()
        return False

    def due(self) -> bool:
        p = self.policy
        if p.kind in ("off", "calls") or self.tail_invocations == 0:
            return False
        if p.kind == "every":
            return self.tail_invocations >= p.every
        if p.kind == "interval":
            return time.time() - self.last_wall >= p.interval_s
        if self.tail_s >= self.interval_s():
            return True
        # A long tail that replays slower than the target: measure C again.
        return (self.tail_invocations >= p.max_tail_invocations
                and self.tail_s >= p.target_tail_s)

    def snapshotted(self, cost_s: float) -> None:
        # An exponential average: one slow snapshot should not stretch τ for long.
        a = self.ALPHA
        self.cost_s = cost_s if self.cost_s is None else (1 - a) * self.cost_s + a * cost_s
        self.tail_s = 0.0
        self.tail_invocations = 0
        self.last_wall = time.time()
        self.last_perf = time.perf_counter()
