"""DescribeDBLogFiles and DownloadDBLogFilePortion with boto3 and the aws CLI over a real postgres log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

INSTANCE = "default-instance-1"


def _fail_a_select(borealis: BorealisProcess) -> str:
    """Run a SELECT that postgres refuses; the name of the missing table, which its log then mentions."""
    table = f"no_such_table_{uuid.uuid4().hex[:12]}"
    with borealis.master_connect() as conn, pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute(f"SELECT * FROM {table}")
    return table


def test_a_postgres_error_is_in_the_downloaded_log(borealis: BorealisProcess) -> None:
    rds = borealis.client("rds")
    table = _fail_a_select(borealis)
    files = rds.describe_db_log_files(DBInstanceIdentifier=INSTANCE)["DescribeDBLogFiles"]
    assert len(files) == 1
    name = files[0]["LogFileName"]
    assert name.startswith("error/postgresql.log.") and files[0]["Size"] > 0
    tail = rds.download_db_log_file_portion(DBInstanceIdentifier=INSTANCE, LogFileName=name)
    assert f'relation "{table}" does not exist' in tail["LogFileData"]
    assert tail["AdditionalDataPending"] is False

    # Paging from the start in blocks of 5 lines reads the whole file, the error included.
    marker, text, pages = "0", "", 0
    while True:
        out = rds.download_db_log_file_portion(
            DBInstanceIdentifier=INSTANCE, LogFileName=name, Marker=marker, NumberOfLines=5
        )
        assert out["LogFileData"].count("\n") <= 5
        text += out["LogFileData"]
        marker, pages = out["Marker"], pages + 1
        if not out["AdditionalDataPending"]:
            break
    assert pages > 1
    assert f'relation "{table}" does not exist' in text
    # The two reads agree on where the error is: the tail is the end of the paged text.
    last = tail["LogFileData"].splitlines()[-1]
    assert last in text.splitlines()

    # The aws CLI pages by itself (--starting-token 0) and prints the whole file.
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    done = subprocess.run(
        [aws, "rds", "download-db-log-file-portion", "--db-instance-identifier", INSTANCE,
         "--log-file-name", name, "--starting-token", "0", "--page-size", "50",
         "--endpoint-url", borealis.url, "--output", "text"],
        capture_output=True, text=True, timeout=120, env=borealis.env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f'relation "{table}" does not exist' in done.stdout
    listed = subprocess.run(
        [aws, "rds", "describe-db-log-files", "--db-instance-identifier", INSTANCE,
         "--endpoint-url", borealis.url, "--output", "json"],
        capture_output=True, text=True, timeout=120, env=borealis.env(),
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["DescribeDBLogFiles"][0]["LogFileName"] == name


def test_unknown_instance_and_file_are_refused(borealis: BorealisProcess) -> None:
    rds = borealis.client("rds")
    with pytest.raises(ClientError) as err:
        rds.describe_db_log_files(DBInstanceIdentifier="no-such-instance")
    assert err.value.response["Error"]["Code"] == "DBInstanceNotFound"
    with pytest.raises(ClientError) as err:
        rds.download_db_log_file_portion(DBInstanceIdentifier="no-such-instance", LogFileName="error/x")
    assert err.value.response["Error"]["Code"] == "DBInstanceNotFound"
    with pytest.raises(ClientError) as err:
        rds.download_db_log_file_portion(DBInstanceIdentifier=INSTANCE, LogFileName="error/postgresql.log.1999")
    assert err.value.response["Error"]["Code"] == "DBLogFileNotFoundFault"
