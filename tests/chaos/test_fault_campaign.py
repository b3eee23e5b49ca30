"""The fault campaign in quick mode: 50 damaged store files, golemish never lies.

Runs ``scripts/fault_campaign.py --quick`` as a subprocess: it builds a store with
workers of every guest, then damages copies of it (flipped bytes, truncation,
deletion of SST, pages, WAL, MANIFEST, CURRENT, OPTIONS, compiled-cache and
identity files) and runs every worker's reading function and ``store check
--deep`` through the CLI. Every outcome must be the correct state or a clean
one-line error: no silent wrong answer, no traceback, no crash, no timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fault_campaign.py"


def test_quick_fault_campaign_has_no_silent_wrong_state(tmp_path, guests):
    out = tmp_path / "faults.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--seed", "3", "--out",
                           str(out)], capture_output=True, text=True, timeout=1500)
    assert out.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())

    assert report["faults"] == 50 and report["original_unchanged"]
    assert all(report["store_files"][kind] for kind in report["table"]), report["store_files"]
    for kind, row in report["table"].items():  # every kind of file was damaged
        assert sum(row.values()) >= 5, (kind, row)
    bad = {o: report["outcomes"][o] for o in ("silent-wrong", "traceback", "crash", "timeout")}
    failures = [f"{r['outcome']} #{r['index']} {r['kind']} {r['file']} {r['what']}: "
                f"{r['detail'][:200]}" for r in report["results"]
                if r["outcome"] in bad]
    assert bad == dict.fromkeys(bad, 0), "\n".join(failures)
    assert proc.returncode == 0 and "OK" in proc.stdout
