"""The shared page store on a PostgreSQL store: the RocksDB tests of
test_shared_pages.py run again with ``home`` a fresh database (tests/pg.py). The
page store goes through the Backend interface only; its tables (cpages, pagerefs,
bases) are rows of golemish_kv like every other table."""

from __future__ import annotations

import pytest

# Run here again, on Postgres (the names are collected in this module too).
from test_shared_pages import (  # noqa: F401
    test_a_format_1_store_stays_readable_and_ages_out,
    test_a_grown_restore_decompresses_in_place_as_the_bytes_path_does,
    test_a_page_that_decompresses_to_the_wrong_size_is_damage,
    test_restore_writes_only_the_pages_that_differ_from_a_fresh_instance,
    test_retention_releases_references_and_deletes_pages_at_zero,
    test_store_check_reports_wrong_counts_and_unreferenced_pages,
    test_workers_of_one_component_share_pages_and_their_base,
)


@pytest.fixture
def home(pg_url: str) -> str:
    """This module's store: a Postgres database."""
    return pg_url


@pytest.fixture(autouse=True)
def _compiled_cache(tmp_path, monkeypatch):
    """Compiled code in a cache directory of each test's own (a Postgres store keeps
    it per machine, not in the store)."""
    monkeypatch.setenv("GOLEMISH_CACHE_DIR", str(tmp_path / "compiled"))
