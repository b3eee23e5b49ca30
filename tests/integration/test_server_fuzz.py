"""Schemathesis fuzzes a real `golemish serve` from its own /openapi.json.

Every operation gets a bounded number of generated requests (valid and invalid,
examples, coverage, fuzzing and stateful phases) with a fixed seed, so a run is
repeatable and stays well under a minute. Checks: no 5xx, and every response's
status code, content type, headers and body conform to the document, and a
deleted resource stays gone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_server import server, store  # noqa: F401 (fixtures)

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance,use_after_free,"
          "ensure_resource_availability")


def _schemathesis() -> str:
    """This environment's schemathesis (a test dependency), else one on PATH."""
    beside = Path(sys.executable).with_name("schemathesis")
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    assert found, "schemathesis is missing: pip install -e '.[test]'"
    return found


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(server, tmp_path):
    # Something for the generated requests to reach: the examples in the document
    # name worker counter/a.
    assert server.invoke("counter/a", "add", "1").status_code == 200
    run = subprocess.run(
        [_schemathesis(), "run", f"{server.url}/openapi.json", "--checks", CHECKS,
         "--max-examples", "10", "--seed", "7", "--workers", "1", "--no-shrink",
         "--request-timeout", "30",
         # Health checks judge the data generation (too much filtered), not the server.
         "--suppress-health-check", "all", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    # Every operation but the document itself (schemathesis leaves /openapi.json out).
    ops = sum(len(item) for item in server.http.get("/openapi.json").json()["paths"].values())
    m = re.search(r"Tested:\s+(\d+)", out)
    assert m and int(m.group(1)) == ops - 1 and " passed" in out, out[-3000:]
