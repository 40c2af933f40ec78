"""DescribeEventCategories on a real Borealis, with boto3 and the aws CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.integration.conftest import BorealisProcess


def test_describe_event_categories(borealis: BorealisProcess, rds: Any) -> None:
    maps = rds.describe_event_categories(SourceType="db-cluster")["EventCategoriesMapList"]
    assert [m["SourceType"] for m in maps] == ["db-cluster"]
    assert {"creation", "failover", "notification"} <= set(maps[0]["EventCategories"])
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    run = subprocess.run(
        [
            aws,
            "rds",
            "describe-event-categories",
            "--source-type",
            "db-instance",
            "--endpoint-url",
            borealis.url,
            "--output",
            "json",
        ],
        env=borealis.env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    listed = json.loads(run.stdout)["EventCategoriesMapList"]
    assert [m["SourceType"] for m in listed] == ["db-instance"]
    assert "availability" in listed[0]["EventCategories"]
