"""The console in a real browser (Chromium through Playwright) against the shared Borealis.

Elements are found as people find them: by their labels, roles and visible text. Waits are on conditions
with generous timeouts, since the machine may be busy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from typing import Any

import pytest

from tests.fixtures.fix_browser import WAIT_MS, browser, sign_in
from tests.integration.conftest import BorealisProcess

__all__ = ["browser"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.pg


@pytest.fixture
def page(browser: Any, borealis: BorealisProcess) -> Iterator[Any]:
    """A page signed in to the console (a context of its own, closed afterwards)."""
    signed_in = sign_in(browser, borealis.url, *borealis.credentials())
    try:
        yield signed_in
    finally:
        signed_in.context.close()


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _run(page: Any, sql: str) -> None:
    page.get_by_role("link", name="Query editor").click()
    page.get_by_label("Cluster").select_option("default")
    page.get_by_label("SQL").fill(sql)
    page.get_by_role("button", name="Run").click()


def test_sign_in_shows_the_default_cluster_available(page: Any) -> None:
    expect = _expect()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="default", exact=True))
    expect(row).to_contain_text("available", timeout=WAIT_MS)
    expect(page.get_by_role("row").filter(has_text="default-instance-1")).to_contain_text("Writer instance")


def test_query_editor_runs_sql_through_the_data_api(page: Any) -> None:
    expect = _expect()
    _run(page, "select 41 + 1 as answer")
    result = page.get_by_role("table", name="Result")
    expect(result.get_by_role("columnheader", name="answer")).to_be_visible(timeout=WAIT_MS)
    expect(result.get_by_role("cell", name="42", exact=True)).to_be_visible()


def test_query_editor_shows_sql_errors(page: Any) -> None:
    expect = _expect()
    _run(page, "select * from no_such_table_for_the_console")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("DatabaseErrorException", timeout=WAIT_MS)
    expect(alert).to_contain_text('relation "no_such_table_for_the_console" does not exist')


def test_markup_in_a_result_is_rendered_as_text(page: Any) -> None:
    expect = _expect()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    probe = '<img src=x onerror="document.title=`pwned`;alert(1)">'
    _run(page, f"select '{probe}' as probe")
    result = page.get_by_role("table", name="Result")
    expect(result.get_by_role("cell", name=probe, exact=True)).to_be_visible(timeout=WAIT_MS)
    assert result.locator("img").count() == 0
    assert dialogs == [] and page.title() != "pwned"


def test_wrong_keys_are_refused(browser: Any, borealis: BorealisProcess) -> None:
    expect = _expect()
    key, secret = borealis.credentials()
    context = browser.new_context(base_url=borealis.url)
    try:
        page = context.new_page()
        page.goto("/console/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=WAIT_MS)
        page.get_by_label("Access key ID").fill(key)
        page.get_by_label("Secret access key").fill(secret[::-1])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("wrong", timeout=WAIT_MS)
        assert page.get_by_role("table", name="Clusters").count() == 0
        assert context.cookies() == []
        page.goto("/console/clusters/default")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=WAIT_MS)
    finally:
        context.close()


def test_charts_show_the_load(page: Any, borealis: BorealisProcess) -> None:
    """Hold connections open and run queries: the connections chart draws the points and shows them."""
    held = 3
    with ExitStack() as stack:
        conns = [stack.enter_context(borealis.master_connect()) for _ in range(held)]
        for conn in conns:
            conn.execute("select count(*) from generate_series(1, 200000)").fetchone()
        page.get_by_role("link", name="default", exact=True).click()
        figure = page.get_by_role("figure", name="Database connections chart")
        _expect()(figure).to_be_visible(timeout=WAIT_MS)
        # The chart refreshes every 5 s; a 10 s point that saw the held connections throughout has them all.
        page.wait_for_function(
            """([fig, held]) => +fig.getAttribute('data-points') > 0 && fig.querySelector('canvas') !== null
                && +fig.getAttribute('data-latest') >= held""",
            arg=[figure.element_handle(), held],
            timeout=90_000,
        )
    for name in ("Capacity (ACU) chart", "CPU utilization (%) chart"):
        chart = page.get_by_role("figure", name=name)
        assert int(chart.get_attribute("data-points") or 0) > 0
        assert chart.locator("canvas").count() >= 1


def test_cluster_actions_ask_for_confirmation(page: Any, borealis: BorealisProcess) -> None:
    """Modify capacity and take a snapshot on a cluster of the test's own, each through its confirmation."""
    expect = _expect()
    rds = borealis.client("rds")
    cid = f"console-{uuid.uuid4().hex[:8]}"
    rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        ManageMasterUserPassword=True,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 2},
    )
    snapshot = f"{cid}-snap"
    try:
        page.goto(f"/console/clusters/{cid}")
        expect(page.locator("#cluster-status")).to_have_text("available", timeout=WAIT_MS)
        page.get_by_label("Maximum capacity (ACU)").fill("3")
        page.get_by_label("Minimum capacity (ACU)").fill("1")
        page.get_by_role("button", name="Modify capacity").click()
        expect(page.get_by_text(f"set capacity to 1 to 3 ACU on cluster {cid}")).to_be_visible(timeout=WAIT_MS)
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_contain_text("Modify capacity: requested", timeout=WAIT_MS)
        scaling = rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]
        assert scaling["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 1.0, "MaxCapacity": 3.0}
        # Cancel leaves everything as it was.
        page.get_by_role("button", name="Stop").click()
        page.get_by_role("link", name="Cancel").click()
        expect(page.locator("#cluster-status")).to_have_text("available", timeout=WAIT_MS)
        page.get_by_label("Snapshot identifier").fill(snapshot)
        page.get_by_role("button", name="Take snapshot").click()
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_contain_text("Take snapshot: requested", timeout=WAIT_MS)
        found = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snapshot)["DBClusterSnapshots"]
        assert [s["DBClusterIdentifier"] for s in found] == [cid]
        _wait_snapshot(rds, snapshot)
        # Stop, then start: the page follows the status (it refreshes every 5 s).
        page.get_by_role("button", name="Stop").click()
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#cluster-status")).to_have_text("stopped", timeout=WAIT_MS)
        page.get_by_role("button", name="Start").click()
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#cluster-status")).to_have_text("available", timeout=WAIT_MS)
        # The list follows changes made elsewhere (here through the API) without a reload.
        page.get_by_role("link", name="Clusters", exact=True).click()
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=cid, exact=True))
        expect(row).to_contain_text("available", timeout=WAIT_MS)
        rds.stop_db_cluster(DBClusterIdentifier=cid)
        expect(row).to_contain_text("stopped", timeout=WAIT_MS)
        rds.start_db_cluster(DBClusterIdentifier=cid)
        expect(row).to_contain_text("available", timeout=WAIT_MS)
    finally:
        _delete(rds, cid, snapshot)


def _wait_snapshot(rds: Any, snapshot: str, timeout: float = 120) -> None:
    """Until the snapshot is no longer being made (a cluster cannot stop meanwhile); gone counts too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snapshot)["DBClusterSnapshots"]
        except rds.exceptions.DBClusterSnapshotNotFoundFault:
            return
        if found and found[0]["Status"] != "creating":
            return
        time.sleep(0.5)


def _delete(rds: Any, cid: str, snapshot: str) -> None:
    _wait_snapshot(rds, snapshot)
    with suppress(rds.exceptions.DBClusterSnapshotNotFoundFault):
        rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
            return
        except rds.exceptions.InvalidDBClusterStateFault:
            time.sleep(0.5)
