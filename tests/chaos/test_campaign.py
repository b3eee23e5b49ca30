"""The crash campaign in quick mode: ~50 SIGKILLs of a mixed workload, no invariant broken.

Runs ``scripts/crash_campaign.py --quick`` as a subprocess (it spawns and kills
its own driver processes) and checks its JSON report: every crash point and
outside kills were exercised, both recovery modes were timed, and every
invariant count is zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from golemish.runtime.crash import POINTS

pytestmark = pytest.mark.chaos

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_campaign.py"


def test_quick_crash_campaign_breaks_no_invariant(tmp_path, guests):
    out = tmp_path / "campaign.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--seed", "7", "--out",
                           str(out)], capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())

    assert report["ok"] and report["failures"] == []
    assert report["kills"] >= 50
    assert all(count == 0 for count in report["invariants"].values()), report["invariants"]
    for point in [*POINTS, "outside"]:
        assert report["kills_by_point"].get(point, 0) >= 1, point
    assert report["ops_acknowledged"] > 100
    assert report["stats"]["store_checks"] >= report["kills"]
    assert report["stats"]["payments"] > 0
    for mode in ("snapshot", "replay"):
        assert report["recovery_latency"][mode]["recoveries"] > 0, mode
    assert "OK" in proc.stdout and "recovery latency" in proc.stdout
