"""Chaos on a cluster: 3 real `golemish serve --cluster` executors on one real
PostgreSQL server under concurrent load (idempotency keys, HTTP effects against a
local sink, durable sleeps); a random executor SIGKILLed and restarted every
``GOLEMISH_CHAOS_INTERVAL_S`` (default 1 s), every 10th round one paused with SIGSTOP
past its lease and resumed. See tests/cluster_campaign.py for what is checked.

``GOLEMISH_CHAOS_KILLS`` sets the number of kills (default 50, as issue 14 asks).
"""

from __future__ import annotations

import json
import os

import pytest

from cluster_campaign import run_campaign

pytestmark = pytest.mark.chaos

KILLS = int(os.environ.get("GOLEMISH_CHAOS_KILLS", "50"))
INTERVAL_S = float(os.environ.get("GOLEMISH_CHAOS_INTERVAL_S", "1.0"))


def test_kills_and_a_zombie_lose_and_duplicate_nothing(pg_url, guests, tmp_path):
    rep = run_campaign(pg_url, guests, kills=KILLS, interval_s=INTERVAL_S,
                       zombie_every=10, log_dir=tmp_path)
    print(json.dumps(rep.as_json(), indent=1))
    assert rep.kills == KILLS and rep.zombies == KILLS // 10
    assert not rep.errors, rep.errors[:10]
    assert rep.acknowledged > 0 and set(rep.by_kind) == {"add", "pay", "nap"}, rep.by_kind
    assert rep.lost == [], rep.lost[:10]
    assert rep.duplicated_effects == [], rep.duplicated_effects[:10]
    assert rep.duplicate_records == [], rep.duplicate_records[:10]
    assert rep.divergences == [], rep.divergences[:10]
    assert rep.taken_over > 0  # failover did happen (not only client retries)
