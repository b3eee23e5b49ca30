"""Versions and time travel: revert, fork and update a worker, across component versions.

The decisions are the pure planner's (:func:`recovery.plan_time_travel` chooses
where a revert or fork lands and which version is in effect there; recovery skips
what a Revert voided); this module applies them. Every change is one atomic batch
(an entry plus the worker's metadata), so a crash leaves the worker either as it
was or fully moved, and the entry says what happened (DESIGN.md invariant 7: the
oplog keeps everything; a revert voids entries, it never deletes them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golemish.oplog import (
    Create, EffectBegin, GolemishError, Revert, Update, UpdateFailed,
)

from .errors import ArgumentError, NotFoundError, UpdateError
from .history import read_history
from .recovery import plan_time_travel, snapshot_candidates, usable_snapshots, void_ranges
from .worker import RecoveryReport, Worker

if TYPE_CHECKING:
    from .executor import Runtime


@dataclass
class RevertResult:
    worker: str
    #: The oplog index whose state the worker now has, and the Revert entry's index.
    target: int
    index: int
    undone: int
    #: Outside effects (HTTP requests, worker calls) in the reverted span: not undone.
    effects: list[str] = field(default_factory=list)
    version: int = 0
    recovery: RecoveryReport | None = None
    seconds: float = 0.0


@dataclass
class ForkResult:
    worker: str
    source: str
    at: int
    version: int
    #: The snapshot manifest the fork starts from (0: it replays from Create).
    snapshot: int = 0
    seconds: float = 0.0


@dataclass
class UpdateResult:
    worker: str
    from_version: int
    version: int
    mode: str
    index: int
    replayed_invocations: int = 0
    seconds: float = 0.0


def _meta(rt: Runtime, worker_id: str) -> dict[str, Any]:
    meta = rt.store.get_worker(worker_id)
    if meta is None:
        raise NotFoundError(f"no worker {worker_id}")
    if not meta.get("durable", True):
        raise ArgumentError(f"worker {worker_id} is ephemeral: it has no oplog to travel in")
    return meta


def _drop(rt: Runtime, worker_id: str) -> None:
    w = rt._drop(worker_id)
    if w is not None:
        w.discard()


def _version_at(log_create: Any, version: int | None) -> int:
    if not isinstance(log_create, Create):
        raise ArgumentError("the worker's oplog has no create entry")
    return log_create.version if version is None else version


# -- revert ------------------------------------------------------------------------------
def revert(rt: Runtime, worker_id: str, *, to_index: int | None = None,
           last_invocations: int | None = None) -> RevertResult:
    """Give the worker its state at an earlier oplog index; later entries become void."""
    t0 = time.perf_counter()
    with rt._lock(worker_id):
        meta = _meta(rt, worker_id)
        _drop(rt, worker_id)  # its instance holds the state being abandoned
        log = rt.store.oplog(worker_id)
        h = read_history(log)
        plan = plan_time_travel(worker_id, h.kinds, to_index=to_index,
                                last_invocations=last_invocations, rewinds=h.rewinds,
                                reverts=h.reverts, updates=h.updates)
        last = log.last_index
        if plan.target == last:
            raise ArgumentError(f"worker {worker_id} is at oplog index {last} already")
        void = void_ranges(h.rewinds, h.reverts)
        effects = [f"{e.name} at {i}" for i, e in log.read(plan.target + 1)
                   if isinstance(e, EffectBegin) and not any(a <= i <= b for a, b in void)]
        version = _version_at(log.get(1), plan.version)
        rt.component(meta["component"], version)  # that version must still be deployed
        new_meta = {k: v for k, v in meta.items()
                    if k not in ("error", "suspended", "last_recovery")}
        new_meta.update(version=version, status="idle")
        rt.crash.hit("before-oplog-append")
        index = rt.store.append_with_worker(
            log, Revert(plan.target, len(plan.undone), len(effects)), new_meta,
            # The undone invocations never happened: their keys may be used again.
            rt.store.idempotency_ops(worker_id, plan.target + 1, last))
        rt.crash.hit("after-oplog-append")
        w = rt._get(worker_id, None, create=False)
        report = w.ensure_ready()
        w.snapshot()  # later recoveries start here instead of replaying to the target
    return RevertResult(worker_id, plan.target, index, len(plan.undone), effects, version,
                        report, time.perf_counter() - t0)


# -- fork ----------------------------------------------------------------------------------
def fork(rt: Runtime, source: str, new_id: str, at: int | None = None) -> ForkResult:
    """A new worker whose history is ``source``'s up to ``at`` (default: all of it)."""
    from .executor import parse_worker_id
    t0 = time.perf_counter()
    comp, _ = parse_worker_id(new_id)
    if comp != parse_worker_id(source)[0]:
        raise ArgumentError(f"a fork of {source} must be a worker of the same component, "
                            f"e.g. {parse_worker_id(source)[0]}/{parse_worker_id(new_id)[1]}")
    with rt._lock(source):
        meta = _meta(rt, source)
        if rt.store.get_worker(new_id) is not None:
            raise ArgumentError(f"worker {new_id} exists already")
        log = rt.store.oplog(source)
        h = read_history(log)
        target = log.last_index if at is None else at
        plan = plan_time_travel(source, h.kinds, to_index=target, rewinds=h.rewinds,
                                reverts=h.reverts, updates=h.updates)
        version = _version_at(log.get(1), plan.version)
        rt.component(comp, version)
        # The newest snapshot the prefix still stands behind (reverts inside the prefix
        # count; those after it are not the fork's history).
        snaps = usable_snapshots(
            snapshot_candidates(rt.store.snapshots.indexes(source), target),
            {a: t for a, t in h.reverts.items() if a <= target})
        new_meta = {k: meta[k] for k in ("memory_limit", "time_limit", "durable",
                                          "snapshot_policy", "http_allow") if k in meta}
        new_meta.update(id=new_id, component=comp, version=version, created_at=time.time(),
                        status="idle", forked_from=f"{source}@{target}")
        rt.crash.hit("before-oplog-append")
        rt.store.fork_worker(source, new_meta, target, snaps[:1])
        rt.crash.hit("after-oplog-append")
    return ForkResult(new_id, source, target, version, snaps[0] if snaps else 0,
                      time.perf_counter() - t0)


# -- update ------------------------------------------------------------------------------
def update(rt: Runtime, worker_id: str, version: int, mode: str = "auto") -> UpdateResult:
    """Move a worker to another version of its component (see the README's Versions).

    An invocation in flight (in this process, or cut off by a crash) finishes on the old
    version first. A refused update is recorded and raises UpdateError; the worker is
    left exactly as it was.
    """
    if mode not in ("auto", "manual"):
        raise ArgumentError(f"update mode {mode!r}: use auto or manual")
    t0 = time.perf_counter()
    with rt._lock(worker_id):
        _meta(rt, worker_id)
        old = rt._get(worker_id, None, create=False)
        old.ensure_ready()
        target = rt.component(old.meta["component"], version)
        if version == old.meta["version"]:
            raise ArgumentError(f"worker {worker_id} runs v{version} already")
        if mode == "auto":
            new, replayed = _auto(rt, old, target)
        else:
            from .versions_manual import manual_update
            new, replayed = manual_update(rt, old, target)
        index = new.oplog.last_index
        new.snapshot(full=True)  # an old version's snapshot is no base for the new code
    return UpdateResult(worker_id, old.meta["version"], version, mode, index, replayed,
                        time.perf_counter() - t0)


def record_failure(rt: Runtime, old: Worker, version: int, mode: str, err: Exception) -> None:
    """Record a refused update in the old worker's oplog and raise UpdateError."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    rt.crash.hit("before-oplog-append")
    old.journal.append(UpdateFailed(version, mode, msg))
    rt.crash.hit("after-oplog-append")
    raise UpdateError(f"update of {old.id} to v{version} ({mode}) failed: {msg}; the "
                      f"worker stays on v{old.meta['version']}, untouched")


def install(rt: Runtime, old: Worker, new: Worker, entry: Update) -> None:
    """Record the Update with the new metadata in one batch; the new worker takes over."""
    meta = {**old.meta, "version": entry.version}
    rt.crash.hit("before-oplog-append")
    rt.store.append_with_worker(new.oplog, entry, meta)
    rt.crash.hit("after-oplog-append")
    new.meta = meta
    new.full_replay = False
    old.discard()
    rt._put(old.id, new)


def _auto(rt: Runtime, old: Worker, target: dict[str, Any]) -> tuple[Worker, int]:
    """Replay the whole history on the target version; any divergence refuses it."""
    version = target["version"]
    try:
        trial = Worker(rt, {**old.meta, "version": version}, None)
    except GolemishError as e:
        record_failure(rt, old, version, "auto", e)
    trial.full_replay = True
    try:
        report = trial.recover()
        if report.finished is not None:  # cannot happen: the old worker was idle
            raise UpdateError("the replay finished an invocation")
    except Exception as e:  # divergence, a trap, a missing export: all refuse the update
        trial.discard()
        record_failure(rt, old, version, "auto", e)
    install(rt, old, trial, Update(version, target["hash"], "auto", old.meta["version"]))
    return trial, report.replayed_invocations


def update_idle(rt: Runtime, component: str, version: int) -> list[tuple[str, str]]:
    """Auto-update every idle worker of ``component`` to ``version``: (worker, outcome)."""
    out: list[tuple[str, str]] = []
    for meta in rt.store.list_workers():
        if meta.get("component") != component or meta.get("version") == version \
                or not meta.get("durable", True):
            continue
        wid = meta["id"]
        try:
            if rt.worker_info(wid)["status"] != "idle":
                out.append((wid, f"skipped: {rt.worker_info(wid)['status']}"))
                continue
            r = update(rt, wid, version, "auto")
            out.append((wid, f"updated v{r.from_version} -> v{r.version}"))
        except GolemishError as e:
            out.append((wid, f"not updated: {str(e).splitlines()[0]}"))
    return out


# -- inspection ----------------------------------------------------------------------------
def version_history(rt: Runtime, worker_id: str) -> list[dict[str, Any]]:
    """The worker's versions in order: created on, updated to, failed updates, reverts."""
    log = rt.store.oplog(worker_id)
    h = read_history(log)
    void = void_ranges(h.rewinds, h.reverts)
    out: list[dict[str, Any]] = []
    for index, kind in h.kinds:
        if kind not in (Create.KIND, Update.KIND, UpdateFailed.KIND, Revert.KIND):
            continue
        e = log.get(index)
        row: dict[str, Any] = {"index": index, "kind": e.NAME if e else "?",
                               "in_effect": not any(a <= index <= b for a, b in void)}
        if isinstance(e, Create):
            row.update(version=e.version)
        elif isinstance(e, Update):
            row.update(version=e.version, from_version=e.from_version, mode=e.mode)
        elif isinstance(e, UpdateFailed):
            row.update(version=e.version, mode=e.mode, message=e.message)
        elif isinstance(e, Revert):
            row.update(to=e.to, invocations=e.invocations, effects=e.effects)
        out.append(row)
    return out


def skipped(rt: Runtime, worker_id: str) -> list[tuple[int, int]]:
    """Inclusive index ranges that recovery skips (voided by Revert and Rewind entries)."""
    h = read_history(rt.store.oplog(worker_id))
    return list(void_ranges(h.rewinds, h.reverts))


def component_usage(rt: Runtime) -> dict[tuple[str, int], int]:
    """(component, version) -> number of workers on it."""
    counts: dict[tuple[str, int], int] = {}
    for meta in rt.store.list_workers():
        key = (meta.get("component", ""), meta.get("version", -1))
        counts[key] = counts.get(key, 0) + 1
    return counts


def delete_component(rt: Runtime, name: str, version: int) -> None:
    """Delete one component version; refused while any worker runs on it."""
    rt.component(name, version)
    users = sorted(m["id"] for m in rt.store.list_workers()
                   if m.get("component") == name and m.get("version") == version)
    if users:
        more = f" and {len(users) - 3} more" if len(users) > 3 else ""
        raise ArgumentError(f"component {name} v{version} is used by {len(users)} worker(s) "
                            f"({', '.join(users[:3])}{more}); update or delete them first")
    rt.store.delete_component(name, version)
