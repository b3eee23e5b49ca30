"""Component, worker and worker-id names: the rules, without the runtime behind them
(CLI commands that a server answers check ids too, and must not load the engine)."""

from __future__ import annotations

import re

from .errors import ArgumentError, ComponentError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, what: str = "component") -> str:
    if not NAME_RE.match(name):
        raise ComponentError(f"invalid {what} name {name!r}: use letters, digits, "
                             "'-', '_' or '.', starting with a letter or digit")
    return name


def parse_worker_id(worker_id: str) -> tuple[str, str]:
    comp, sep, name = worker_id.partition("/")
    if not sep or not comp or not name:
        raise ArgumentError(f"worker {worker_id!r} should be COMPONENT/NAME, e.g. counter/alice")
    check_name(comp)
    check_name(name, "worker")
    return comp, name
