"""The web console in a real browser (Chromium) against a real server process.

Every page is loaded against workers that really ran; the forms change real state
(invoke, complete a promise, snapshot, interrupt, revert) and the tests read that
state back over the API, not only from the page.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import expect

from console_kit import ConsoleServer


def rows(page, table: str):
    return page.locator(f"#{table} tbody tr")


def test_workers_page_lists_workers_filters_them_and_updates_live(console, page):
    page.goto(console.url + "/#/workers")
    alice = page.locator('tr[data-worker="counter/alice"]')
    info = console.server.http.get("/workers/counter/alice").json()
    expect(alice).to_contain_text("idle")
    expect(alice.locator(".oplog-length")).to_have_text(str(info["oplog_length"]))
    expect(alice).to_contain_text("resident")
    expect(page.locator('tr[data-worker="agent/approver"]')).to_contain_text("suspended")
    expect(rows(page, "workers")).to_have_count(4)

    page.select_option("#filter-component", "cart")
    expect(rows(page, "workers")).to_have_count(1)
    expect(rows(page, "workers").first).to_have_attribute("data-worker", "cart/shop")
    page.select_option("#filter-component", "")
    page.select_option("#filter-status", "suspended")
    expect(rows(page, "workers")).to_have_count(1)
    expect(rows(page, "workers").first).to_have_attribute("data-worker", "agent/approver")
    page.select_option("#filter-status", "")
    page.fill("#filter-name", "bob")
    expect(rows(page, "workers")).to_have_count(1)

    # Live: an invocation made elsewhere shows up without a reload.
    bob = page.locator('tr[data-worker="counter/bob"] .oplog-length')
    before = int(bob.inner_text())
    console.server.ok("counter/bob", "add", "1")
    after = console.server.http.get("/workers/counter/bob").json()["oplog_length"]
    assert after > before
    expect(bob).to_have_text(str(after))


def test_worker_page_oplog_is_folded_paged_filtered_and_searched(console, page):
    page.goto(console.url + "/#/worker/counter/alice")
    expect(page.locator("#worker-status")).to_have_text("idle")
    invocations = page.locator("#oplog details.inv")
    expect(invocations.first).to_be_visible()
    n_inv = console.server.http.get("/workers/counter/alice").json()["invocations"]
    expect(invocations).to_have_count(n_inv)  # 5 invocations, all on the last page of 50
    first = invocations.first
    assert first.get_attribute("open") is None  # folded
    expect(first.locator("summary")).to_contain_text("add(5:i64)")
    expect(first.locator("summary")).to_contain_text("-> (5:i64)")
    expect(first.locator(".entry.k-host-call").first).to_be_hidden()
    first.locator("summary").click()
    call = first.locator(".entry.k-host-call").first
    expect(call).to_be_visible()
    expect(call.locator("pre.detail")).to_be_hidden()
    call.click()  # every recorded field of the entry
    expect(call.locator("pre.detail")).to_contain_text('"name": "clock_time_get"')
    expect(call.locator("pre.detail")).to_contain_text('"response":')

    page.select_option("#oplog-kind", "log")
    expect(page.locator("#oplog .entry")).to_have_count(5)
    assert set(page.locator("#oplog .entry .kind").all_inner_texts()) == {"log"}
    page.select_option("#oplog-kind", "")
    page.fill("#oplog-search", "total 15")
    expect(page.locator("#oplog .entry")).to_have_count(1)
    expect(page.locator("#oplog .entry")).to_contain_text("add 3 -> total 15")
    page.fill("#oplog-search", "")
    expect(invocations).to_have_count(n_inv)

    # Paging: from the first entry.
    page.click("#oplog-first")
    expect(page.locator("#oplog-page")).to_contain_text("entries 1–")
    expect(page.locator("#oplog .entry.k-create")).to_have_count(1)


def test_snapshots_on_the_timeline_and_the_snapshot_button(console, page):
    page.goto(console.url + "/#/worker/counter/alice")
    snaps = console.server.http.get("/console/api/workers/counter/alice/snapshots").json()
    assert len(snaps) == 1
    expect(page.locator("#snapshots tr.snapshot-row")).to_have_count(1)
    expect(page.locator("#timeline circle.snap")).to_have_count(1)
    page.click("#btn-snapshot")
    expect(page.locator("#action-result")).to_contain_text("snapshot at oplog index")
    expect(page.locator("#snapshots tr.snapshot-row")).to_have_count(2)
    expect(page.locator("#timeline circle.snap")).to_have_count(2)
    after = console.server.http.get("/console/api/workers/counter/alice/snapshots").json()
    assert len(after) == 2 and after[-1]["index"] == \
        console.server.http.get("/workers/counter/alice").json()["oplog_length"]


def test_invoke_from_the_form_with_the_signature_shown(console, page):
    page.goto(console.url + "/#/worker/counter/alice")
    page.select_option("#invoke-function", "add")
    expect(page.locator("#invoke-signature")).to_have_text("add(i64) -> i64")
    page.fill("#invoke-params input.arg", "10")
    page.click("#invoke-button")
    expect(page.locator("#invoke-value")).to_have_text("38")  # 5 + 7 + 3 + 11 + 2 + 10
    expect(page.locator("#invoke-result")).to_contain_text("add 10 -> total 38")
    assert console.server.ok("counter/alice", "get")["results"][0]["value"] == 38

    # A WIT component: WAVE arguments, the WIT signature.
    page.goto(console.url + "/#/worker/cart/shop")
    page.select_option("#invoke-function", "add-item")
    expect(page.locator("#invoke-signature")).to_have_text("add-item: func(item: item) -> u32")
    page.fill("#invoke-params input.arg", '{sku: "plum", qty: 3, price-cents: 70}')
    page.click("#invoke-button")
    expect(page.locator("#invoke-value")).to_have_text("3")
    page.select_option("#invoke-function", "total")
    page.click("#invoke-button")
    expect(page.locator("#invoke-value")).to_have_text(str(2 * 150 + 90 + 3 * 70))
    # A bad WAVE value: the server's one-line error, nothing invoked.
    length = console.server.http.get("/workers/cart/shop").json()["oplog_length"]
    page.select_option("#invoke-function", "remove-item")
    page.fill("#invoke-params input.arg", "plum")  # a string needs quotes in WAVE
    page.click("#invoke-button")
    expect(page.locator("#invoke-result .result.error")).to_be_visible()
    assert console.server.http.get("/workers/cart/shop").json()["oplog_length"] == length


def test_completing_a_promise_from_the_form_resumes_the_worker(console, page):
    page.goto(console.url + "/#/promises")
    row = page.locator(f'tr[data-promise="{console.promise}"]')
    expect(row).to_contain_text("pending")
    expect(row).to_contain_text("agent/approver")
    row.locator("input.promise-data").fill("yes")
    row.locator("button").click()
    expect(page.locator("#promise-outcome")).to_contain_text(
        "worker agent/approver resumed: approval returned")
    expect(page.locator("#promise-outcome")).to_contain_text("approval for this: yes")
    expect(row).to_have_count(0)  # no longer awaiting completion
    info = console.server.http.get("/workers/agent/approver").json()
    assert info["status"] == "idle"
    ends = console.server.http.get("/workers/agent/approver/oplog").json()
    assert [e["kind"] for e in ends][-1] == "return"

    page.goto(console.url + "/#/worker/agent/approver")
    expect(page.locator("#worker-status")).to_have_text("idle")
    expect(page.locator("#live-output")).to_contain_text("approval for this: yes")


def test_live_output_follows_new_invocations(console, page):
    page.goto(console.url + "/#/worker/counter/bob")
    live = page.locator("#live-output")
    expect(live).to_contain_text("add 2 -> total 2")
    expect(page.locator("#live-state")).to_have_text("following")
    console.server.ok("counter/bob", "add", "40")
    expect(live).to_contain_text("add 40 -> total 42")
    console.server.ok("counter/bob", "add", "58")
    expect(live).to_contain_text("add 58 -> total 100")
    index = [e["index"] for e in console.server.http.get(
        "/console/api/workers/counter/bob/oplog", params={"kind": "log"}).json()["entries"]][-1]
    expect(live).to_contain_text(f"[{index}]add 58")


def test_interrupt_and_revert_buttons(console, page):
    page.goto(console.url + "/#/worker/agent/approver")
    expect(page.locator("#worker-status")).to_have_text("suspended")
    page.click("#btn-interrupt")
    expect(page.locator("#action-result")).to_contain_text(
        "abandoned the pending invocation approval")
    expect(page.locator("#worker-status")).to_have_text("idle")
    assert console.server.http.get("/workers/agent/approver").json()["status"] == "idle"

    # Revert counter/alice to just after its first invocation (add 5).
    first_return = next(e["index"] for e in console.server.http.get(
        "/workers/counter/alice/oplog").json() if e["kind"] == "return")
    page.goto(console.url + "/#/worker/counter/alice")
    expect(page.locator("h2")).to_contain_text("counter/alice")
    page.on("dialog", lambda d: d.accept())
    page.fill("#revert-index", str(first_return))
    page.click("#btn-revert")
    expect(page.locator("#action-result")).to_contain_text(
        f"reverted to oplog index {first_return}: 4 invocation(s) undone")
    assert console.server.ok("counter/alice", "get")["results"][0]["value"] == 5
    page.select_option("#oplog-kind", "revert")
    expect(page.locator("#oplog .entry.k-revert")).to_have_count(1)


def test_components_page_shows_versions_functions_and_wit(console, page):
    page.goto(console.url + "/#/components")
    expect(rows(page, "components")).to_have_count(3)
    expect(page.locator('tr[data-component="cart"]')).to_contain_text("yes")
    page.click('tr[data-component="cart"] a')
    expect(page.locator("#wit")).to_contain_text("record item")
    expect(page.locator("#functions")).to_contain_text(
        "checkout: func(coupon: option<string>) -> result<u64, string>")
    page.goto(console.url + "/#/component/counter")
    expect(page.locator("#functions")).to_contain_text("add(i64) -> i64")
    expect(page.locator("main")).to_contain_text("counter/alice")

    # Invoking on a new name creates the worker.
    page.fill("#new-worker-name", "carol")
    page.select_option("#invoke-function", "add")
    page.fill("#invoke-params input.arg", "9")
    page.click("#invoke-button")
    expect(page.locator("#invoke-value")).to_have_text("9")
    page.click("#open-worker")
    expect(page.locator("h2")).to_contain_text("counter/carol")
    expect(page.locator("#worker-status")).to_have_text("idle")
    assert console.server.ok("counter/carol", "get")["results"][0]["value"] == 9


def test_dashboard_shows_metrics_or_says_they_are_unavailable(console, page):
    has_metrics = console.server.http.get("/metrics").status_code == 200
    page.goto(console.url + "/#/dashboard")
    expect(page.locator("#s-workers .v")).to_have_text("4")
    expect(page.locator("#s-promises .v")).to_have_text("1")
    if has_metrics:
        expect(page.locator("#m-rate")).to_be_visible()
        expect(page.locator("#metrics-unavailable")).to_have_count(0)
    else:
        expect(page.locator("#metrics-unavailable")).to_contain_text("metrics unavailable")


def test_dashboard_reads_prometheus_text(console, page):
    """The dashboard's parser and sums over the metric names `golemish serve` exports,
    fed real exposition text from prometheus_client (this branch serves no /metrics)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    reg = CollectorRegistry()
    inv = Counter("golemish_invocations", "", ["component", "outcome"], registry=reg)
    lat = Histogram("golemish_invocation_seconds", "", ["component"], registry=reg)
    rec = Counter("golemish_recoveries", "", ["mode"], registry=reg)
    rec_s = Histogram("golemish_recovery_seconds", "", ["mode"], registry=reg)
    snaps = Counter("golemish_snapshots", "", registry=reg)
    snap_b = Counter("golemish_snapshot_bytes", "", registry=reg)
    workers = Gauge("golemish_workers", "", ["state"], registry=reg)
    # Summed over components, 90 of 100 in (0, 5 ms] and 10 in (100, 250 ms]: by linear
    # interpolation (histogram_quantile) p50 = 5 * 50/90 ms, p99 = 100 + 150 * 9/10 ms.
    for _ in range(90):
        lat.labels("counter").observe(0.002)
    for _ in range(10):
        lat.labels("cart").observe(0.2)
    rec.labels("snapshot").inc(3)
    rec_s.labels("snapshot").observe(0.004)
    rec.labels("replay").inc(1)
    snaps.inc(7)
    snap_b.inc(3 << 20)
    workers.labels("resident").set(12)
    workers.labels("evicted").set(30)
    scrapes = []

    def serve_metrics(route):
        inv.labels("counter", "ok").inc(20)
        scrapes.append(1)
        route.fulfill(status=200, body=generate_latest(reg),
                      headers={"Content-Type": "text/plain; version=0.0.4"})

    page.route("**/metrics", serve_metrics)
    page.goto(console.url + "/#/dashboard")
    expect(page.locator("#m-p50")).to_have_text("2.78 ms")
    expect(page.locator("#m-p99")).to_have_text("235.0 ms")
    expect(page.locator("#m-recoveries")).to_contain_text("snapshot")
    expect(page.locator('#m-recoveries tr:has-text("snapshot") td').nth(1)).to_have_text("3")
    expect(page.locator('#m-recoveries tr:has-text("replay") td').nth(1)).to_have_text("1")
    expect(page.locator("#m-snapshots")).to_contain_text("7")
    expect(page.locator("#m-snapshots")).to_contain_text("3.0 MiB written")
    expect(page.locator("#m-workers .v")).to_have_text("12")
    # The second scrape gives a rate: 20 more invocations between two scrapes.
    expect(page.locator("#m-rate .stat")).not_to_contain_text("…")
    expect(page.locator("#m-rate")).to_contain_text(re.compile(r"\d+ in all"))
    assert len(scrapes) >= 2


def test_a_token_protected_server_refuses_everything_without_the_token(tmp_path: Path,
                                                                       guests, new_page):
    server = ConsoleServer(str(tmp_path / "store"), token="s3cret-token")
    try:
        server.deploy("counter", guests["counter"])
        server.ok("counter/alice", "add", "1")
        bare = httpx.Client(base_url=server.url, timeout=30)
        # The static shell holds no data: it loads, and asks for the token.
        assert bare.get("/").status_code == 200
        assert bare.get("/console/assets/app.js").status_code == 200
        w = "/console/api/workers/counter/alice"
        for method, path in [("GET", "/workers"), ("GET", "/workers/counter/alice"),
                             ("GET", "/components"), ("GET", "/promises"),
                             ("GET", "/console/api/residency"), ("GET", "/console/api/summary"),
                             ("GET", "/console/api/components/counter/functions"),
                             ("GET", w + "/oplog"), ("GET", w + "/snapshots"),
                             ("GET", w + "/logs?follow=1"), ("POST", w + "/snapshot"),
                             ("POST", w + "/revert"), ("POST", "/console/assets/app.js"),
                             ("GET", "/console/assets/../api/summary")]:
            r = bare.request(method, path)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json()["error"]["code"] == "unauthorized"
        bare.close()

        page = new_page()
        page.goto(server.url + "/#/workers")
        expect(page.locator("#token-form")).to_be_visible()
        expect(page.locator("#workers")).to_have_count(0)
        page.fill("#token-input", "wrong")
        page.click("#token-form button")
        expect(page.locator("#token-error")).to_contain_text("refused")
        page.fill("#token-input", "s3cret-token")
        page.click("#token-form button")
        expect(page.locator('tr[data-worker="counter/alice"]')).to_be_visible()
        page.goto(server.url + "/#/worker/counter/alice")
        expect(page.locator("#live-output")).to_contain_text("add 1 -> total 1")
        page.reload()  # kept for the tab's session
        expect(page.locator("#worker-status")).to_have_text("idle")
        other = new_page()  # another session: asks again
        other.goto(server.url + "/#/workers")
        expect(other.locator("#token-form")).to_be_visible()
    finally:
        assert server.stop() == 0
