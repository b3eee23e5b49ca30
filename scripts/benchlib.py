"""What the benchmark scripts share: statistics, timing, machine notes, the guests."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "guest_examples" / "build"


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median and spread of a list of samples (kept raw in the output too)."""
    qs = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median": statistics.median(samples), "q1": qs[0], "q3": qs[2],
            "min": min(samples), "max": max(samples), "n": len(samples),
            "samples": list(samples)}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the cyclic GC out of the timed region (as timeit does)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_sample() -> tuple[float, float, float] | None:
    """(wall s, busy CPU s of the whole machine, CPU s of this process), for noise notes."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    t = os.times()
    return time.monotonic(), (sum(fields[:8]) - idle) / tick, t.user + t.system


def foreign_cpu(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None
                ) -> dict[str, float] | None:
    """CPU used between two samples by this process and by everything else."""
    if a is None or b is None or b[0] <= a[0]:
        return None
    wall, cpus = b[0] - a[0], os.cpu_count() or 1
    own, total = b[2] - a[2], b[1] - a[1]
    return {"wall_s": wall, "own_cpus": own / wall, "other_cpus": max(0.0, total - own) / wall,
            "machine_cpus": cpus}


def run_sections(sections: Sequence[str], only: Sequence[str],
                 run_one: Callable[[str], list[str]]) -> tuple[dict[str, Any], dict[str, float]]:
    """Run each of ``sections`` named in ``only``, in order: ``run_one(section)`` prints
    what it likes and returns lines to print after it; then a footer says how long it
    took and how loaded the machine was. Returns (load, seconds) by section."""
    loads: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for section in sections:
        if section not in only:
            continue
        say()
        load0, t0, cpu0 = loadavg(), time.perf_counter(), cpu_sample()
        lines = run_one(section)
        timings[section] = time.perf_counter() - t0
        cpu = foreign_cpu(cpu0, cpu_sample())
        loads[section] = {"start": load0, "end": loadavg(), "cpu": cpu}
        for line in lines:
            say(line)
        other = (f"; other processes used {cpu['other_cpus']:.2f} of {cpu['machine_cpus']} "
                 f"CPUs, this one {cpu['own_cpus']:.2f}" if cpu else "")
        say(f"  [{section}: {timings[section]:.0f} s, load {load0} -> "
            f"{loads[section]['end']}{other}]")
    return loads, timings


def say(line: str = "") -> None:
    print(line, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def guest_modules(names: Sequence[str]) -> dict[str, bytes]:
    """The guests' wasm: (re)built when possible, else taken as built."""
    try:
        spec = importlib.util.spec_from_file_location("guest_build",
                                                      ROOT / "guest_examples" / "build.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        paths = mod.build(list(names), verbose=False)
    except Exception as e:  # no zig, say: fall back on modules already built
        paths = {n: BUILD_DIR / f"{n}.wasm" for n in names}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise SystemExit(f"cannot build the guests ({e}) and {', '.join(missing)} "
                             f"missing: run `python guest_examples/build.py`") from None
        print(f"note: guest build failed ({e}); using the modules in {BUILD_DIR}",
              file=sys.stderr)
    return {n: Path(p).read_bytes() for n, p in paths.items()}


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    from golemish.runtime.snapshot.asyncify import available_tool
    from golemish.runtime.snapshot.dirty import UffdTracker

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "wasmtime": version("wasmtime"),
        "rocksdict": version("rocksdict"),
        "zstandard": version("zstandard"),
        "xxhash": version("xxhash"),
        "icpp_binaryen": version("icpp-binaryen"),
        "asyncify_tool": available_tool(),
        "golemish": version("golemish"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "uffd_available": UffdTracker.available(),
        "loadavg_at_start": loadavg(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "git_dirty_files": None if not status else [ln[3:] for ln in status.splitlines()],
        "snapshot_policy_env": os.environ.get("GOLEMISH_SNAPSHOT_POLICY"),
    }


def compile_golemish() -> dict[str, Any]:
    """Byte-compile golemish's own modules, as installing it from a wheel does.

    Benchmarks that time process start-up measure a golemish with compiled bytecode:
    an editable install writes it at the first run, unless PYTHONDONTWRITEBYTECODE
    is set (as on the sandboxes these figures come from), in which case every start
    compiles ~100 modules from source (~0.1 s). What was found is recorded."""
    import compileall

    import golemish.oplog
    import golemish.runtime
    dirs = [Path(m.__file__).parent for m in (golemish.runtime, golemish.oplog)]
    ok = all(compileall.compile_dir(str(d), quiet=1) for d in dirs)
    return {"compiled": ok, "dont_write_bytecode_env": bool(os.environ.get(
        "PYTHONDONTWRITEBYTECODE"))}


def fresh_copy(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
