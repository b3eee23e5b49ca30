"""`golemish invoke --at TIME / --in DELAY`: store an invocation to run later.

Through a running server (``POST .../invocations``) its scheduler runs it when
due. In-process the invocation is checked and stored in the store's durable
queue, and runs once `golemish serve` is running on that store.
"""

from __future__ import annotations

import click

from ..errors import ArgumentError
from ..invocations import check_due, describe_due, enqueue, parse_at, parse_delay
from .client import Client, _seg
from .common import Ctx, emit_json


def due_seconds(at: str | None, delay: str | None, now_s: float) -> float:
    if at is not None and delay is not None:
        raise ArgumentError("give --at or --in, not both")
    return parse_at(at) if at is not None else now_s + parse_delay(delay or "0")


def schedule(ctx: Ctx, client: Client | None, worker: str, function: str, args: list[str],
             key: str | None, env: list[tuple[str, str]], at_s: float,
             refused: list[str]) -> None:
    """Store the invocation (``refused``: options that do not go with a schedule)."""
    if refused:
        raise ArgumentError(f"{', '.join(refused)} cannot be combined with --at/--in")
    due_ns = check_due(at_s)
    if client is not None:
        comp, _, name = worker.partition("/")
        _, rec = client.request(
            "POST", f"/workers/{_seg(comp)}/{_seg(name)}/invocations",
            {"function": function, "args": args, "env": dict(env), "at": due_ns / 1e9},
            headers={"Idempotency-Key": key} if key else None)
        rec["due_ns"] = int(rec["due_at"] * 1e9)
        where = ""
    else:
        with ctx.runtime() as rt:
            rec, _ = enqueue(rt, worker, function, args, env=env, idempotency_key=key,
                             due_ns=due_ns)
        rec = dict(rec, due_at=rec["due_ns"] / 1e9)
        where = "; runs when `golemish serve` is running on this store"
    if ctx.json:
        emit_json({k: v for k, v in rec.items() if not k.endswith("_ns")})
        return
    click.echo(f"scheduled invocation {rec['id']}: {function} on {worker} at "
               f"{describe_due(rec)}{where}")
