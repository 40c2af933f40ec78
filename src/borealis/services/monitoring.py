"""The CloudWatch API (service ``monitoring``; boto3 speaks its json protocol, older clients query/XML).

Thin handlers over metrics/_cloudwatch.py: GetMetricData (MetricStat queries), GetMetricStatistics and
ListMetrics on the metric store the scaler fills (namespace AWS/RDS), and PutMetricData for custom namespaces.
Domain refusals become CloudWatch's
error codes: the modeled ones (InvalidParameterValue, MissingParameter, InvalidParameterCombination,
InvalidNextToken) by their shapes, GetMetricData's validation failures as ValidationError.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.metrics import MetricStore
from borealis.metrics._alarms import AlarmBook
from borealis.metrics._cloudwatch import (
    MetricsError,
    get_metric_data,
    get_metric_statistics,
    list_metrics,
    put_metric_data,
)

__all__ = ["handlers"]

Params = dict[str, Any]

_SHAPES = {
    "InvalidParameterValue": "InvalidParameterValueException",
    "MissingParameter": "MissingRequiredParameterException",
    "InvalidParameterCombination": "InvalidParameterCombinationException",
    "InvalidNextToken": "InvalidNextToken",
    "ResourceNotFound": "ResourceNotFound",
    "InvalidFormat": "InvalidFormatFault",
}


def _serve(operation: Callable[..., dict[str, Any]], store: MetricStore) -> Handler:
    async def handler(ctx: RequestContext, p: Params) -> dict[str, Any]:
        try:
            return operation(store, p, now=time.time())
        except MetricsError as exc:
            raise AWSError(_SHAPES.get(exc.code, exc.code), exc.message) from None

    return handler


def _alarm_handlers(book: AlarmBook) -> dict[str, Handler]:
    def serve(operation: Callable[[Params, float], dict[str, Any]]) -> Handler:
        async def handler(ctx: RequestContext, p: Params) -> dict[str, Any]:
            try:
                return operation(p, time.time())
            except MetricsError as exc:
                raise AWSError(_SHAPES.get(exc.code, exc.code), exc.message) from None

        return handler

    return {
        "PutMetricAlarm": serve(book.put_metric_alarm),
        "PutCompositeAlarm": serve(book.put_composite_alarm),
        "DescribeAlarms": serve(lambda p, now: book.describe_alarms(p)),
        "DescribeAlarmsForMetric": serve(lambda p, now: book.describe_alarms_for_metric(p)),
        "DeleteAlarms": serve(lambda p, now: book.delete_alarms(p["AlarmNames"], now)),
        "SetAlarmState": serve(book.set_alarm_state),
        "EnableAlarmActions": serve(lambda p, now: book.set_actions_enabled(p["AlarmNames"], True, now)),
        "DisableAlarmActions": serve(lambda p, now: book.set_actions_enabled(p["AlarmNames"], False, now)),
        "DescribeAlarmHistory": serve(lambda p, now: book.describe_alarm_history(p)),
        "TagResource": serve(lambda p, now: book.tag_resource(p)),
        "UntagResource": serve(lambda p, now: book.untag_resource(p)),
        "ListTagsForResource": serve(lambda p, now: book.list_tags_for_resource(p)),
    }


def handlers(store: MetricStore, alarms: AlarmBook | None = None) -> dict[str, Handler]:
    """The handler of every supported CloudWatch operation, by operation name (the alarm operations with
    ``alarms``)."""
    return {
        **(_alarm_handlers(alarms) if alarms is not None else {}),
        "GetMetricData": _serve(get_metric_data, store),
        "GetMetricStatistics": _serve(get_metric_statistics, store),
        "ListMetrics": _serve(list_metrics, store),
        "PutMetricData": _serve(put_metric_data, store),
    }
