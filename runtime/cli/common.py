"""Shared pieces of the command line: the context, error handling, output helpers."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from golemish.oplog import GolemishError

from ..crash import CrashPoints
from ..errors import Interrupted, Suspended, WorkerSuspendedError
from ..snapshot.policy import SnapshotPolicy

if TYPE_CHECKING:
    from ..executor import Runtime


class Ctx:
    def __init__(self, home: str, as_json: bool, debug: bool, sync: bool, recovery: str,
                 policy: SnapshotPolicy, retention: str = "keep") -> None:
        self.retention = retention
        self.home = home
        self.server: str | None = None  # --server URL (see cli_client.find_server)
        self.json = as_json
        self.debug = debug
        self.sync = sync
        self.recovery = recovery
        self.policy = policy
        self.memory_limit_mib = 256
        self.time_limit = 60.0
        self.max_component_bytes: int | None = None  # None: RuntimeConfig's default

    def runtime(self, crash_at: str | None = None, *, create: bool = False,
                readonly: bool = False) -> Runtime:
        """A Runtime on the existing store; ``create`` (deploy only) may make a new one,
        ``readonly`` reads it, also while another process writes to it."""
        # The executor (wasmtime, the typed modules) only for commands that run in-process.
        from ..executor import Runtime, RuntimeConfig
        crash = CrashPoints(crash_at) if crash_at else CrashPoints.from_env()
        return Runtime(RuntimeConfig(home=self.home, sync=self.sync, crash=crash,
                                     memory_limit=self.memory_limit_mib << 20,
                                     time_limit=self.time_limit, recovery=self.recovery,
                                     snapshot_policy=self.policy,
                                     oplog_retention=self.retention, catch_signals=True,
                                     create=create, readonly=readonly,
                                     **({"max_component_bytes": self.max_component_bytes}
                                        if self.max_component_bytes else {})))


_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class MainGroup(click.Group):
    """The top-level group: click's own usage errors get the same one-line ``error:``
    form as ours instead of a usage block and ``Error:``."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            rv = super().main(*args, **{**kwargs, "standalone_mode": False})
        except _NO_ARGS_IS_HELP as e:  # `golemish worker`: its help, as click prints it
            click.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            msg = e.format_message().rstrip(".")
            if msg[1:2].islower():
                msg = msg[0].lower() + msg[1:]
            hint = ""
            if isinstance(e, click.UsageError) and e.ctx is not None:
                hint = f" (see '{e.ctx.command_path} --help')"
            click.echo(f"error: {msg}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        # An explicit exit (--help, --version) returns its status; a command returns None.
        sys.exit(rv if isinstance(rv, int) else 0)


def fail(ctx: Ctx, err: BaseException, message: str | None = None) -> NoReturn:
    if ctx.debug:
        traceback.print_exception(err)
    msg = message or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def _set_flag(click_ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx = click_ctx.find_object(Ctx)
    if value and ctx is not None and param.name:
        setattr(ctx, param.name, True)


def _everywhere() -> list[click.Parameter]:
    """``--json`` and ``--debug`` for a command: accepted after it too (``invoke … --json``),
    since that is where people type them; the group's options still work before it."""
    return [
        click.Option(["--json", "json"], is_flag=True, expose_value=False, callback=_set_flag,
                     help="Machine-readable output (also accepted before the command)."),
        click.Option(["--debug", "debug"], is_flag=True, expose_value=False,
                     callback=_set_flag,
                     help="Show tracebacks on errors (also accepted before the command)."),
    ]


def run(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn golemish errors into one-line messages; never fail a command on its output.

    The command also accepts ``--json`` and ``--debug`` among its own options.
    """
    inner = _one_line_errors(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with guarded_output() as failures:
            result = inner(*args, **kwargs)
        report_output_failures(failures)
        return result
    # `run` sits under the command's own decorators, which append to this list.
    wrapper.__click_params__ = _everywhere()  # type: ignore[attr-defined]
    return wrapper


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx: Ctx = click.get_current_context().find_object(Ctx)  # type: ignore[assignment]
        try:
            return fn(ctx, *args, **kwargs)
        except WorkerSuspendedError as e:
            fail(ctx, GolemishError(
                f"{e}; complete what it waits for, or abandon its pending invocation with "
                f"`golemish worker interrupt {e.worker_id}`"))
        except Suspended as e:
            # Not a failure: the invocation waits, durably, and the process may exit.
            if ctx.json:
                emit_json({"status": "suspended", "worker": e.worker_id,
                            "promise": e.promise, "until_ns": e.until_ns})
            else:
                click.echo(f"golemish: {e}; resume with `golemish "
                           + (f"promise complete {e.promise} DATA`" if e.promise
                              else f"worker resume {e.worker_id}`"), err=True)
        except Interrupted as e:
            # Ctrl-C or SIGTERM while guest code ran: say what became of the worker.
            click.echo(f"interrupted: {e.outcome()}", err=True)
            sys.exit(128 + e.signum)
        except GolemishError as e:
            fail(ctx, e)
        except OSError as e:
            fail(ctx, e)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # a bug of ours: still one line; --debug has the traceback
            first = str(e).splitlines()[0] if str(e) else ""
            fail(ctx, e, f"internal error: {type(e).__name__}: {first} (--debug shows where)")
    return wrapper


class _Guarded:
    """A std stream whose writes never raise: the first failure is kept, later writes
    are dropped.

    Guest output is in the oplog before it is shown, so a full disk, a closed stdout
    or a reader that went away must not fail (and so roll back) the invocation that
    printed it. The command finishes, then reports the failure (see ``run``).
    ``buffer`` is guarded the same way, for the guest's bytes.
    """

    def __init__(self, inner: Any, name: str, failures: dict[str, OSError],
                 binary: bool = False) -> None:
        self._inner, self._name, self._failures = inner, name, failures
        self._binary = binary

    def _do(self, op: str, *args: Any) -> Any:
        if self._name in self._failures:
            return None
        if self._inner is None:
            self._failures[self._name] = OSError(errno.EBADF, "it is closed")
            return None
        try:
            return getattr(self._inner, op)(*args)
        except (OSError, ValueError) as e:  # ValueError: a closed file object
            self._failures[self._name] = e if isinstance(e, OSError) else OSError(
                errno.EBADF, "it is closed")
            return None

    def write(self, data: Any) -> int:
        if not data:
            # click probes whether a stream is binary with an empty write: answer as
            # the stream would (a TypeError for the wrong kind), without failing.
            if self._inner is None:
                if isinstance(data, bytes) != self._binary:
                    raise TypeError(f"write() argument must be "
                                    f"{'bytes' if self._binary else 'str'}")
                return 0
            try:
                return int(self._inner.write(data) or 0)
            except (OSError, ValueError):
                return 0
        self._do("write", data)
        return len(data)

    def flush(self) -> None:
        self._do("flush")

    @property
    def buffer(self) -> _Guarded:
        return _Guarded(getattr(self._inner, "buffer", None), self._name, self._failures,
                        binary=True)

    def __getattr__(self, attr: str) -> Any:
        if self._inner is None:
            # A stream closed when the process started: enough for click to write to it.
            if attr in ("encoding", "errors"):
                return {"encoding": "utf-8", "errors": "strict"}[attr]
            if attr == "isatty":
                return lambda: False
            raise AttributeError(attr)
        return getattr(self._inner, attr)


def protect_stdio() -> None:
    """Put /dev/null on a standard descriptor that was closed when we started.

    Otherwise the next file opened (a RocksDB table, say) would get descriptor 1
    or 2, and anything written to "stdout" would land in the store. Python has
    already set such a stream to None, which ``_Guarded`` reports as closed.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


@contextlib.contextmanager
def guarded_output() -> Iterator[dict[str, OSError]]:
    """Guard sys.stdout and sys.stderr for the duration of a command."""
    failures: dict[str, OSError] = {}
    saved = sys.stdout, sys.stderr
    sys.stdout = _Guarded(saved[0], "stdout", failures)  # type: ignore[assignment]
    sys.stderr = _Guarded(saved[1], "stderr", failures)  # type: ignore[assignment]
    try:
        yield failures
    finally:
        sys.stdout, sys.stderr = saved
        for name, stream, fd in (("stdout", saved[0], 1), ("stderr", saved[1], 2)):
            if name in failures and stream is not None:
                # What could not be written is still buffered: send it to /dev/null so
                # that the interpreter's flush at exit does not complain.
                with contextlib.suppress(OSError, ValueError):
                    if stream.fileno() == fd:
                        null = os.open(os.devnull, os.O_WRONLY)
                        os.dup2(null, fd)
                        os.close(null)


def report_output_failures(failures: dict[str, OSError]) -> None:
    """After the command has done its work: say that its output was lost, exit non-zero.

    A reader that went away (``| head -1``) is not an error worth a message: like
    other Unix tools we stop quietly, with the status of a process SIGPIPE killed.
    """
    err = failures.get("stdout")
    if err is None:
        if failures:
            sys.exit(1)  # stderr is gone: nothing to say it on
        return
    if err.errno == errno.EPIPE:
        sys.exit(128 + 13)
    if "stderr" not in failures:
        click.echo(f"error: output lost: cannot write to stdout: {err.strerror or err} "
                   "(the command itself completed)", err=True)
    sys.exit(1)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()
    click.echo(line)
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))



def writer(stream: int, data: bytes, as_json: bool) -> None:
    out = sys.stderr if (stream == 2 or as_json) else sys.stdout
    out.buffer.write(data)
    out.flush()


class SafePath(click.Path):
    """click.Path that reports a name it cannot even stat (a NUL byte) as a bad
    parameter, a one-line usage error, instead of raising ValueError."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return super().convert(value, param, ctx)
        except ValueError as e:
            self.fail(f"{value!r}: {e}", param, ctx)
