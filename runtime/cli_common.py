"""Shared pieces of the command line: the context, error handling, output helpers."""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from golemish.oplog import GolemishError

from .crash import CrashPoints
from .errors import Suspended, WorkerSuspendedError
from .executor import Runtime, RuntimeConfig
from .policy import SnapshotPolicy


class Ctx:
    def __init__(self, home: str, as_json: bool, debug: bool, sync: bool, recovery: str,
                 policy: SnapshotPolicy, retention: str = "keep") -> None:
        self.retention = retention
        self.home = home
        self.json = as_json
        self.debug = debug
        self.sync = sync
        self.recovery = recovery
        self.policy = policy
        self.memory_limit_mib = 256
        self.time_limit = 60.0

    def runtime(self, crash_at: str | None = None, *, create: bool = False,
                readonly: bool = False) -> Runtime:
        """A Runtime on the existing store; ``create`` (deploy only) may make a new one,
        ``readonly`` reads it, also while another process writes to it."""
        crash = CrashPoints(crash_at) if crash_at else CrashPoints.from_env()
        return Runtime(RuntimeConfig(home=self.home, sync=self.sync, crash=crash,
                                     memory_limit=self.memory_limit_mib << 20,
                                     time_limit=self.time_limit, recovery=self.recovery,
                                     snapshot_policy=self.policy,
                                     oplog_retention=self.retention,
                                     create=create, readonly=readonly))


def fail(ctx: Ctx, err: BaseException) -> NoReturn:
    if ctx.debug:
        traceback.print_exception(err)
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def run(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn golemish errors into one-line messages."""
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
        except GolemishError as e:
            fail(ctx, e)
        except OSError as e:
            fail(ctx, e)
    return wrapper


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


def typed_json(values: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": t, "value": v} for t, v in values]
