"""Manual updates: the guest carries its own state across a change of memory layout.

ABI (documented for guests in guest_examples/include/golemish.h):

- the old version exports ``golemish_save() -> i32``: a pointer to a
  ``{u32 ptr, u32 len}`` pair naming the saved bytes;
- the new version exports ``golemish_load(ptr: i32, len: i32) -> i32``; the host
  allocates the buffer with the guest's ``cabi_realloc`` and copies the bytes in
  (the guest owns it); 0 accepts the state, anything else refuses the update.

The saved bytes go into the Update entry, so a recovery without a later snapshot
starts from that entry: a fresh instance of the new version, ``_initialize``,
``golemish_load`` of the same bytes, then replay of what followed. Both calls run
with the journal sealed: a host call that would be recorded (clock, random, HTTP,
output) refuses the update, because the load must give the same state every time.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from golemish.oplog import Create, InvokeStart, Update

from .errors import DivergenceError, InvocationFailed, UpdateError
from .history import read_history
from .journal import Cursor
from .recovery import recovery_base, void_ranges

if TYPE_CHECKING:
    from .executor import Runtime
    from .worker import Worker

SAVE, LOAD = "golemish_save", "golemish_load"
_PAIR = struct.Struct("<II")


class _Sealed:
    """Journal replay over one boundary entry: any recorded host call diverges."""

    def __init__(self, w: Worker) -> None:
        self.w = w

    def __enter__(self) -> None:
        self.w.journal.replay_from(Cursor(iter([(self.w.oplog.last_index + 1,
                                                InvokeStart("(update)"))])))

    def __exit__(self, *exc: object) -> None:
        self.w.journal.go_live()


def _sealed_call(w: Worker, name: str, args: list[int]) -> Any:
    assert w.instance is not None
    try:
        with _Sealed(w):
            return w.instance.call(name, args, time_limit=w.time_limit)
    except DivergenceError as e:
        raise UpdateError(f"{name} made a host call that would be recorded ({e.asked}); it "
                          f"must be deterministic") from None
    except InvocationFailed as e:
        raise UpdateError(f"{name} failed: {e}") from None


def save_state(w: Worker) -> bytes:
    """Call the old version's golemish_save and copy out what it names."""
    inst = w.instance
    assert inst is not None
    if not inst.has_export(SAVE):
        raise UpdateError(f"v{w.meta['version']} does not export {SAVE}")
    ptr = int(_sealed_call(w, SAVE, [])[0]) & 0xFFFFFFFF
    if not inst.check(ptr, _PAIR.size):
        raise UpdateError(f"{SAVE} returned a pointer outside memory")
    data_ptr, size = _PAIR.unpack(inst.read(ptr, _PAIR.size))
    if not inst.check(data_ptr, size):
        raise UpdateError(f"{SAVE} named {size} bytes outside memory")
    return inst.read(data_ptr, size)


def load_state(w: Worker, state: bytes) -> None:
    """Hand saved bytes to the new version's golemish_load on its fresh instance."""
    inst = w.instance
    assert inst is not None
    if not inst.has_export(LOAD):
        raise UpdateError(f"v{w.meta['version']} does not export {LOAD}")
    ptr = 0
    if state:
        if not inst.has_export("cabi_realloc"):
            raise UpdateError(f"v{w.meta['version']} exports no cabi_realloc for the state")
        ptr = int(_sealed_call(w, "cabi_realloc", [0, 0, 1, len(state)])[0]) & 0xFFFFFFFF
        if not ptr or not inst.check(ptr, len(state)):
            raise UpdateError("cabi_realloc gave no room for the saved state")
        inst.write(ptr, state)
    code = _sealed_call(w, LOAD, [ptr, len(state)])
    if code and code[0] != 0:
        raise UpdateError(f"{LOAD} refused the saved state (returned {code[0]})")


def start_from_state(w: Worker, create: Create, state: bytes) -> None:
    """A fresh instance of the worker's version holding ``state`` (sealed throughout)."""
    w.journal.go_live()
    with _Sealed(w):
        w.instance = w._instantiate(create)
    load_state(w, state)


def manual_base(w: Worker) -> tuple[int, bytes] | None:
    """(index, saved state) of the last manual update in effect, if there is one."""
    h = read_history(w.oplog)
    at = recovery_base(h.updates, void_ranges(h.rewinds, h.reverts))
    if not at:
        return None
    entry = w.oplog.get(at)
    assert isinstance(entry, Update)
    return at, entry.state


def manual_update(rt: Runtime, old: Worker, target: dict[str, Any]) -> tuple[Worker, int]:
    """Save on the old version, load into a fresh instance of the new one, record it."""
    from .versions import install, record_failure
    from .worker import Worker
    version = target["version"]
    if target["hash"] == old.component["hash"]:
        raise UpdateError(f"v{version} is the same module as v{old.meta['version']}: "
                          f"nothing to carry over (use --mode auto)")
    new = None
    try:
        state = save_state(old)
        new = Worker(rt, {**old.meta, "version": version}, None)
        create = old.oplog.get(1)
        assert isinstance(create, Create)
        start_from_state(new, create, state)
    except Exception as e:  # refused: the old instance may have run save; rebuild it
        if new is not None:
            new.discard()
        old.discard()
        record_failure(rt, old, version, "manual", e)
    assert new is not None
    new._track(None)
    install(rt, old, new, Update(version, target["hash"], "manual", old.meta["version"],
                                 state))
    return new, 0
