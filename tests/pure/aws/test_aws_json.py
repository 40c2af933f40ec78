"""The json protocols: secretsmanager (JSON 1.1) and cloudwatch (JSON 1.0, query-compatible)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from aws_harness import Recorder
from botocore.exceptions import ClientError

from borealis.aws import AWSError

CREATED = dt.datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=dt.UTC)
JSON11 = {"Content-Type": "application/x-amz-json-1.1"}


def test_get_secret_value_round_trip(harness_factory, recorder: Recorder) -> None:
    secret = {
        "ARN": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:db-AbCdEf",
        "Name": "db",
        "VersionId": "v1",
        "SecretBinary": b"\x00\x01binary\xff",
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": CREATED,
    }
    harness = harness_factory({"secretsmanager": {"GetSecretValue": recorder.returning(secret)}})
    out = harness.client("secretsmanager").get_secret_value(SecretId="db", VersionStage="AWSCURRENT")
    ctx, args = recorder.calls[0]
    assert ctx.service == "secretsmanager"
    assert ctx.operation == "GetSecretValue"
    assert args == {"SecretId": "db", "VersionStage": "AWSCURRENT"}
    for key, value in secret.items():
        assert out[key] == value
    body = json.loads(harness.last[2])
    assert body["CreatedDate"] == CREATED.timestamp()
    assert harness.last[1]["content-type"] == "application/x-amz-json-1.1"


def test_create_secret_blob_input(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"secretsmanager": {"CreateSecret": recorder.returning({"Name": "x"})}})
    harness.client("secretsmanager").create_secret(
        Name="x", SecretBinary=b"\xffraw", Tags=[{"Key": "k", "Value": "v"}], ForceOverwriteReplicaSecret=True
    )
    _, args = recorder.calls[0]
    assert args["SecretBinary"] == b"\xffraw"
    assert args["Tags"] == [{"Key": "k", "Value": "v"}]
    assert args["ForceOverwriteReplicaSecret"] is True
    assert len(args["ClientRequestToken"]) >= 32  # botocore fills the idempotency token


def test_modeled_json_error(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {"secretsmanager": {"GetSecretValue": recorder.raising(AWSError("ResourceNotFoundException", "no such"))}}
    )
    sm = harness.client("secretsmanager")
    with pytest.raises(sm.exceptions.ResourceNotFoundException) as caught:
        sm.get_secret_value(SecretId="nope")
    assert caught.value.response["Error"]["Message"] == "no such"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert json.loads(harness.last[2]) == {"__type": "ResourceNotFoundException", "Message": "no such"}


def test_unknown_operation(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"secretsmanager": {"GetSecretValue": recorder.returning({})}})
    with pytest.raises(ClientError) as caught:
        harness.client("secretsmanager").list_secrets()
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "SerializationException"),
        (b"[1, 2]", "SerializationException"),
        (b'{"SecretId": 5}', "SerializationException"),
        (b"{}", "ValidationException"),
        (b'{"SecretId": "x", "VersionId": ["a"]}', "SerializationException"),
    ],
)
def test_bad_bodies_are_400(harness_factory, recorder: Recorder, body: bytes, code: str) -> None:
    harness = harness_factory({"secretsmanager": {"GetSecretValue": recorder.returning({})}})
    headers = {**JSON11, "X-Amz-Target": "secretsmanager.GetSecretValue"}
    status, _, out = harness.signed("secretsmanager", "POST", "/", body, headers)
    assert status == 400
    assert json.loads(out)["__type"] == code
    assert recorder.calls == []


def test_missing_member_message_names_it(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"secretsmanager": {"GetSecretValue": recorder.returning({})}})
    headers = {**JSON11, "X-Amz-Target": "secretsmanager.GetSecretValue"}
    _, _, out = harness.signed("secretsmanager", "POST", "/", b"{}", headers)
    assert "Value null at 'secretId'" in json.loads(out)["Message"]


def test_handler_crash(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"secretsmanager": {"GetSecretValue": recorder.raising(KeyError("boom"))}})
    with pytest.raises(ClientError) as caught:
        harness.client("secretsmanager").get_secret_value(SecretId="x")
    assert caught.value.response["Error"]["Code"] == "InternalFailure"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert b"boom" not in harness.last[2]


def test_cloudwatch_json_mode(harness_factory, recorder: Recorder) -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    result = {
        "MetricDataResults": [
            {"Id": "q", "Label": "ACU", "Timestamps": [start], "Values": [1.5], "StatusCode": "Complete"}
        ]
    }
    harness = harness_factory({"cloudwatch": {"GetMetricData": recorder.returning(result)}})
    out = harness.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/RDS",
                        "MetricName": "ServerlessDatabaseCapacity",
                        "Dimensions": [{"Name": "DBClusterIdentifier", "Value": "app"}],
                    },
                    "Period": 60,
                    "Stat": "Average",
                },
            }
        ],
        StartTime=start,
        EndTime=start + dt.timedelta(hours=1),
    )
    _, args = recorder.calls[0]
    assert args["StartTime"] == start
    assert args["MetricDataQueries"][0]["MetricStat"]["Period"] == 60
    assert out["MetricDataResults"] == result["MetricDataResults"]


def test_cloudwatch_query_compatible_error(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {"cloudwatch": {"GetMetricData": recorder.raising(AWSError("InvalidNextToken", "bad token"))}}
    )
    cw = harness.client("cloudwatch")
    with pytest.raises(cw.exceptions.InvalidNextToken) as caught:
        cw.get_metric_data(MetricDataQueries=[], StartTime=CREATED, EndTime=CREATED, NextToken="x")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "x-amzn-query-error" in harness.last[1]


def test_cloudwatch_query_mode(harness_factory, recorder: Recorder) -> None:
    """Older botocore (<= 1.42.6) speaks query to cloudwatch; both must work."""
    harness = harness_factory({"cloudwatch": {"ListMetrics": recorder.returning({"Metrics": [{"MetricName": "m"}]})}})
    body = b"Action=ListMetrics&Version=2010-08-01&Namespace=AWS%2FRDS&Dimensions.member.1.Name=DBClusterIdentifier"
    status, _, out = harness.signed(
        "monitoring", "POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, out
    _, args = recorder.calls[0]
    assert args == {"Namespace": "AWS/RDS", "Dimensions": [{"Name": "DBClusterIdentifier"}]}
    assert b"<ListMetricsResult><Metrics><member><MetricName>m</MetricName></member></Metrics>" in out
