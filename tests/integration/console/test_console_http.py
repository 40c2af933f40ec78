"""The console's rules over plain HTTP, on the shared Borealis: sessions, refusals, CSRF and escaping.

The browser tests (test_console_browser.py) show the pages work; these show what a hostile client gets:
no page, JSON endpoint or action without a session, no state change without the session's CSRF token or
from another origin, and markup from query results and error messages shown as text.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid

import psycopg

from tests.integration.conftest import BorealisProcess
from tests.integration.console._http import ConsoleClient

_PAGES = ["/console/", "/console/clusters/default", "/console/query", "/console/proxies", "/console/insights"]
_JSON = ["/console/api/clusters", "/console/api/clusters/default", "/console/api/clusters/default/metrics"]


def _signed_in(borealis: BorealisProcess) -> ConsoleClient:
    client = ConsoleClient(borealis.url)
    reply = client.sign_in(*borealis.credentials())
    assert reply.status == 303, reply.text
    return client


def test_pages_and_json_refused_without_a_session(borealis: BorealisProcess) -> None:
    for cookie in (None, "made-up-session-id"):
        client = ConsoleClient(borealis.url, cookie=cookie)
        for path in _PAGES:
            reply = client.get(path)
            assert reply.status == 303 and reply.headers["Location"] == "/console/sign-in", (path, reply.status)
            assert b"default" not in reply.body
        for path in _JSON:
            reply = client.get(path)
            assert reply.status == 401, (path, reply.status)
            assert reply.json() == {"message": "Sign in to the console first."}
        reply = client.post("/console/query", {"cluster": "default", "sql": "select 1", "csrf": "x"})
        assert reply.status == 401
        assert b"<table" not in reply.body


def test_wrong_keys_refused(borealis: BorealisProcess) -> None:
    key, secret = borealis.credentials()
    wrong = [(key, secret[:-1] + ("A" if secret[-1] != "A" else "B")), (key, ""), ("AKIANOTAKEYATALL0000", secret)]
    for key_id, given in wrong:
        client = ConsoleClient(borealis.url)
        reply = client.sign_in(key_id, given)
        assert reply.status == 401
        assert "The access key ID or secret access key is wrong." in reply.text
        assert reply.headers.get("Set-Cookie") is None and client.cookie is None
        assert "default" not in reply.text and "Clusters" not in reply.text  # nothing else is shown


def test_session_cookie_is_random_http_only_and_same_site_strict(borealis: BorealisProcess) -> None:
    ids = set()
    for _ in range(2):
        client = ConsoleClient(borealis.url)
        reply = client.sign_in(*borealis.credentials())
        cookie = reply.headers["Set-Cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= attributes, cookie
        assert "SameSite=Strict" in cookie and "Path=/console/" in cookie
        assert client.cookie is not None and len(client.cookie) >= 40
        ids.add(client.cookie)
    assert len(ids) == 2


def test_pages_answer_with_a_session(borealis: BorealisProcess) -> None:
    client = _signed_in(borealis)
    for path in _PAGES:
        reply = client.get(path)
        assert reply.status == 200, (path, reply.status)
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    clusters = client.get("/console/api/clusters").json()["clusters"]
    default = next(c for c in clusters if c["id"] == "default")
    assert default["instances"] and default["instances"][0]["role"] == "Writer instance"


def test_posts_need_the_session_csrf_token(borealis: BorealisProcess) -> None:
    client = _signed_in(borealis)
    token = client.csrf()
    form = {"cluster": "default", "sql": "select 41 + 1 as answer"}
    for sent in ({}, {"csrf": ""}, {"csrf": token[:-1] + ("x" if token[-1] != "x" else "y")}):
        reply = client.post("/console/query", {**form, **sent})
        assert reply.status == 403, sent
        assert "CSRF" in reply.text and "<table" not in reply.text
    # Another session's token is not this one's.
    other = _signed_in(borealis)
    assert client.post("/console/query", {**form, "csrf": other.csrf()}).status == 403
    # An action without the token changes nothing.
    reply = client.post("/console/clusters/default/actions", {"action": "stop"})
    assert reply.status == 403
    assert client.get("/console/api/clusters/default").json()["status"] not in ("stopping", "stopped")
    # With it, the query runs; from another origin, even with it, it does not.
    ok = client.post("/console/query", {**form, "csrf": token})
    assert ok.status == 200 and re.search(r"<th[^>]*>answer</th>", ok.text) and "<td>42</td>" in ok.text
    cross = client.post("/console/query", {**form, "csrf": token}, Origin="http://evil.example")
    assert cross.status == 403


def test_sign_out_ends_the_session(borealis: BorealisProcess) -> None:
    client = _signed_in(borealis)
    assert client.get("/console/api/clusters").status == 200
    reply = client.post("/console/sign-out", {"csrf": client.csrf()})
    assert reply.status == 303 and "Max-Age=0" in reply.headers["Set-Cookie"]
    assert client.get("/console/api/clusters").status == 401
    assert client.get("/console/").status == 303


def test_markup_in_results_and_errors_is_shown_as_text(borealis: BorealisProcess) -> None:
    client = _signed_in(borealis)
    token = client.csrf()
    probe = "<img src=x onerror=alert(1)>"
    sql = f"select '{probe}' as \"<b>col</b>\""
    reply = client.post("/console/query", {"cluster": "default", "sql": sql, "csrf": token})
    assert reply.status == 200
    result = reply.text.split("<caption>Result</caption>", 1)[1]
    assert "<img" not in result and "<b>" not in result
    assert "&lt;img src=x onerror=alert(1)&gt;" in result and "&lt;b&gt;col&lt;/b&gt;" in result
    bad = client.post("/console/query", {"cluster": "default", "sql": 'select * from "<script>x"', "csrf": token})
    assert "relation &quot;&lt;script&gt;x&quot; does not exist" in bad.text
    assert "<script>x" not in bad.text
    assert "DatabaseErrorException" in bad.text


def test_query_editor_reports_data_api_errors_and_limits(borealis: BorealisProcess) -> None:
    client = _signed_in(borealis)
    token = client.csrf()
    # The Data API's own checks apply: multiple statements, an unknown secret.
    multi = client.post("/console/query", {"cluster": "default", "sql": "select 1; select 2", "csrf": token})
    assert "ValidationException" in multi.text
    secret = "arn:aws:secretsmanager:us-east-1:000000000000:secret:nope-AbCdEf"
    missing = client.post("/console/query", {"cluster": "default", "sql": "select 1", "secret": secret, "csrf": token})
    assert "SecretsErrorException" in missing.text or "BadRequestException" in missing.text
    # The response size limit (1 MiB of records), as ExecuteStatement answers it.
    big = client.post("/console/query", {"cluster": "default", "sql": "select repeat('x', 2000000)", "csrf": token})
    assert "Database returned more than the allowed response size limit" in big.text and "<table" not in big.text


def test_action_errors_are_reported_and_change_nothing(borealis: BorealisProcess) -> None:
    client = _signed_in(borealis)
    token = client.csrf()
    confirm = client.get("/console/clusters/default/confirm?action=modify-capacity&min=8&max=1")
    assert confirm.status == 200 and "Confirm" in confirm.text
    reply = client.post(
        "/console/clusters/default/actions", {"action": "modify-capacity", "min": "8", "max": "1", "csrf": token}
    )
    assert reply.status == 400 and 'role="alert"' in reply.text
    summary = client.get("/console/api/clusters/default").json()
    assert (summary["min_capacity"], summary["max_capacity"]) == (0.5, 4.0)
    # The API's own refusal, in its words: no reader to fail over to.
    failover = client.post("/console/clusters/default/actions", {"action": "failover", "csrf": token})
    assert failover.status == 400 and "InvalidDBClusterStateFault" in failover.text
    unknown = client.post("/console/clusters/default/actions", {"action": "<b>drop</b>", "csrf": token})
    assert unknown.status == 400 and "&lt;b&gt;drop&lt;/b&gt;" in unknown.text and "<b>drop" not in unknown.text


def test_proxies_page_shows_pools_and_connections(borealis: BorealisProcess) -> None:
    from tests.integration.proxy.conftest import make_proxy

    name = f"console-proxy-{uuid.uuid4().hex[:8]}"
    info = make_proxy(borealis, name)
    try:
        with psycopg.connect(**info.conninfo(application_name="console-proxy-test")) as conn:
            conn.execute("select 1").fetchone()
            page = _signed_in(borealis).get("/console/proxies").text
        section = page.split(f"<h2>{name}</h2>", 1)[1].split("</section>", 1)[0]
        assert "<dt>Target cluster</dt><dd>default</dd>" in section
        assert re.search(r"<dt>Client connections</dt><dd>1</dd>", section), section
        assert f"<caption>Endpoints of {name}</caption>" in section and "READ_WRITE" in section
        pools = section.split(f"<caption>Connection pools of {name}</caption>", 1)[1]
        assert f"<td>{info.user}</td><td>postgres</td>" in pools
    finally:
        borealis.client("rds").delete_db_proxy(DBProxyName=name)


def test_insights_page_shows_the_sessions_now(borealis: BorealisProcess) -> None:
    tag = f"console-probe-{uuid.uuid4().hex[:8]}"
    with borealis.master_connect() as conn:
        conn.execute(f"set application_name = '{tag}'")
        conn.execute("select 1").fetchone()
        page = _signed_in(borealis).get("/console/insights?instance=default-instance-1").text
    assert "<caption>Sessions now (pg_stat_activity)</caption>" in page
    assert f"<td>{tag}</td>" in page
    # Without Performance Insights on the instance, the page says so (the top SQL needs it).
    assert "Performance Insights is not enabled for default-instance-1" in page


def test_insights_page_shows_top_sql_and_waits(borealis: BorealisProcess) -> None:
    """With Performance Insights on, the page shows the statements and waits that made the load."""
    rds = borealis.client("rds")
    rds.modify_db_instance(
        DBInstanceIdentifier="default-instance-1", EnablePerformanceInsights=True, ApplyImmediately=True
    )
    client = _signed_in(borealis)
    stop = threading.Event()

    def load() -> None:
        with borealis.master_connect() as conn:
            conn.autocommit = True
            while not stop.is_set():
                conn.execute("select pg_sleep(0.5)")

    threads = [threading.Thread(target=load) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        page = ""
        while time.monotonic() < deadline:
            page = client.get("/console/insights?instance=default-instance-1").text
            if "<td>select pg_sleep(?)</td>" in page and "<td>Timeout:PgSleep</td>" in page:
                break
            time.sleep(1)
        assert "<caption>Top SQL (last hour)</caption>" in page
        top = page.split("<caption>Top SQL (last hour)</caption>", 1)[1].split("</table>", 1)[0]
        assert "<td>select pg_sleep(?)</td>" in top, top
        waits = page.split("<caption>Top waits (last hour)</caption>", 1)[1].split("</table>", 1)[0]
        assert "<td>Timeout:PgSleep</td><td>Timeout</td>" in waits, waits
    finally:
        stop.set()
        for t in threads:
            t.join()
        rds.modify_db_instance(
            DBInstanceIdentifier="default-instance-1", EnablePerformanceInsights=False, ApplyImmediately=True
        )


def test_temporary_keys_sign_in_with_their_session_token(borealis: BorealisProcess) -> None:
    creds = borealis.client("sts").get_session_token(DurationSeconds=900)["Credentials"]
    key, secret, token = creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    for sent in ("", token[:-1]):
        client = ConsoleClient(borealis.url)
        form = {"access_key_id": key, "secret_access_key": secret, "session_token": sent}
        reply = client.post("/console/sign-in", form)
        assert reply.status == 401 and reply.headers.get("Set-Cookie") is None
    client = ConsoleClient(borealis.url)
    reply = client.post("/console/sign-in", {"access_key_id": key, "secret_access_key": secret, "session_token": token})
    assert reply.status == 303
    client.cookie = reply.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    assert client.get("/console/api/clusters").status == 200


def test_add_reader_creates_the_instance_the_form_names(borealis: BorealisProcess) -> None:
    """The "Add reader" action is CreateDBInstance in the cluster (the first instance of a cluster is its writer,
    as on AWS); the cluster is the test's own and goes afterwards."""
    rds = borealis.client("rds")
    cid = f"console-r-{uuid.uuid4().hex[:8]}"
    rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        ManageMasterUserPassword=True,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 1},
    )
    iid = f"{cid}-one"
    try:
        client = _signed_in(borealis)
        form = {"action": "add-reader", "name": iid, "csrf": client.csrf()}
        reply = client.post(f"/console/clusters/{cid}/actions", form)
        assert reply.status == 303 and reply.headers["Location"] == f"/console/clusters/{cid}?done=add-reader"
        found = rds.describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"]
        assert [(i["DBClusterIdentifier"], i["DBInstanceClass"]) for i in found] == [(cid, "db.serverless")]
        # The same name again: the API's refusal, shown.
        again = client.post(f"/console/clusters/{cid}/actions", form)
        assert again.status == 400 and "DBInstanceAlreadyExists" in again.text
    finally:
        waiter = {"Delay": 1, "MaxAttempts": 240}
        with contextlib.suppress(rds.exceptions.DBInstanceNotFoundFault):
            rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=waiter)
            rds.delete_db_instance(DBInstanceIdentifier=iid, SkipFinalSnapshot=True)
            rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=waiter)
        deadline = time.monotonic() + 120
        while True:  # the cluster may still be settling after its last instance went
            try:
                rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
                break
            except rds.exceptions.InvalidDBClusterStateFault:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
