"""CloudWatch through the AWS SDK for JavaScript v3 (tests/clients/cloudwatch_sdk_v3.mjs) on a real Borealis:
aggregation of values in one second, a percentile, GetMetricData's paginator, AWS's refusal of an action that is
not an ARN, DescribeAlarms' two lists, alarm tags, and a composite alarm on a metric alarm."""

from __future__ import annotations

import uuid

from tests.integration.conftest import BorealisProcess
from tests.integration.iac.tools import node


def test_cloudwatch_with_the_js_sdk_v3(borealis: BorealisProcess) -> None:
    node("cloudwatch_sdk_v3.mjs", borealis, NAMESPACE=f"JsSdk-{uuid.uuid4().hex[:8]}")
