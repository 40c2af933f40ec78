"""CloudWatch alarms: PutMetricAlarm, PutCompositeAlarm, DescribeAlarms, DeleteAlarms, SetAlarmState,
Enable/DisableAlarmActions, DescribeAlarmHistory, and their evaluation over the metric store.

:func:`evaluate` is the pure rule, from the CloudWatch user guide ("Evaluating an alarm", "How alarm state is
evaluated when data is missing", whose two tables tests/pure/metrics/test_alarm_evaluation.py checks cell by
cell). A period breaches when its value (the alarm's statistic over ``Period`` seconds) ``<op> Threshold``.
CloudWatch reads an *evaluation range* longer than ``EvaluationPeriods`` (N): Borealis reads N + 2 complete
periods, as the guide's example (5 for 3). Then:

- with at least N real datapoints in the range, the most recent N of them decide (missing periods skipped,
  TreatMissingData unused): ALARM when at least ``DatapointsToAlarm`` (M, default N) breach, else OK;
- with fewer, ``breaching`` / ``notBreaching`` fill the missing ones (as few as make N) and the same count
  decides; ``missing`` and ``ignore`` use the real ones only: none at all is INSUFFICIENT_DATA (``missing``) or
  the current state (``ignore``); M breaching is ALARM; any not breaching is OK; all breaching but fewer than
  M keeps the state (``ignore``), or (``missing``) is INSUFFICIENT_DATA when one of them lies in the last N
  periods and ALARM when all come from before them, as the guide's tables have it.

:class:`AlarmBook` keeps the alarms and their history (two weeks of it, as CloudWatch)
in ``DATA_DIR/alarms.json``, rewritten atomically on each change; :meth:`AlarmBook.evaluate_all` runs
every few seconds from the application. Actions (SNS, Auto Scaling) are stored and shown, never run: Borealis
has no SNS.

A composite alarm (PutCompositeAlarm) is in ALARM while its AlarmRule (``_rule.py``) holds on its children's
states, else OK; INSUFFICIENT_DATA only from its creation until that first evaluation, which PutCompositeAlarm
runs at once. It is evaluated again whenever one of its children changes state, within the same change, so its
parents follow in turn (breadth first, with no recursion: a chain of any length costs no stack). Each composite
alarm is evaluated at most once per change, so a cycle stops where it comes back, as CloudWatch stops there too.
Its children must exist, and cannot be deleted while it names them.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import decimal
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from operator import ge, gt, le, lt
from pathlib import Path
from typing import Any

from . import _stats
from ._cloudwatch import MetricsError, _check_period, _dimensions, _epoch, check_queries, run_queries
from ._math import TimeSeries
from ._rule import Rule, RuleError, parse_rule
from ._store import MetricStore

__all__ = ["OPERATORS", "AlarmBook", "evaluate", "run_alarms"]

log = logging.getLogger(__name__)

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": ge,
    "GreaterThanThreshold": gt,
    "LessThanThreshold": lt,
    "LessThanOrEqualToThreshold": le,
}
"""The comparison operators of single-metric alarms (the anomaly-detection band ones need metric math)."""
_TREAT = ("breaching", "notBreaching", "ignore", "missing")
_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_HISTORY_KEEP = 14 * 86400
_EXTRA_PERIODS = 2  # the evaluation range: EvaluationPeriods + 2 periods (the user guide's example: 5 for 3)
_ARN = re.compile(r"^arn:[a-z0-9-]+:[a-z0-9-]+:[^:]*:[^:]*:.+$")
_MAX_ALARM_METRICS = 10  # CloudWatch: an alarm on metric math uses up to 10 metrics


def evaluate(
    values: Sequence[float | None],
    *,
    threshold: float,
    operator: str,
    datapoints_to_alarm: int,
    treat_missing: str,
    current: str,
    periods: int | None = None,
) -> str:
    """The state for the evaluation range's ``values`` (oldest first; None: no datapoint in that period), of
    which the last ``periods`` (default: all) are the alarm's EvaluationPeriods. See the module's docstring."""
    n = len(values) if periods is None else periods
    breaches = OPERATORS[operator]
    present = [(i, breaches(v, threshold)) for i, v in enumerate(values) if v is not None]
    if len(present) >= n:  # enough real datapoints: the most recent n of them, missing ones skipped
        flags = [f for _, f in present[-n:]]
        return "ALARM" if sum(flags) >= datapoints_to_alarm else "OK"
    flags = [f for _, f in present]
    if treat_missing in ("breaching", "notBreaching"):
        # Filled in as few times as possible: the real datapoints, then n of them in all.
        flags += [treat_missing == "breaching"] * (n - len(flags))
        return "ALARM" if sum(flags) >= datapoints_to_alarm else "OK"
    if not flags:
        return current if treat_missing == "ignore" else "INSUFFICIENT_DATA"
    if sum(flags) >= datapoints_to_alarm:
        return "ALARM"
    if not all(flags):
        return "OK"
    # Every datapoint present breaches, but fewer than DatapointsToAlarm of them: AWS's tables keep the state
    # (ignore), or say INSUFFICIENT_DATA when one lies in the evaluation periods and ALARM when they all
    # come from before them (missing).
    if treat_missing == "ignore":
        return current
    first_period = len(values) - n
    return "ALARM" if all(i < first_period for i, _ in present) else "INSUFFICIENT_DATA"


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class AlarmBook:
    """The metric alarms of one Borealis, in ``<data_dir>/alarms.json``; safe to call from several threads."""

    def __init__(self, path: Path, *, region: str, account: str) -> None:
        self.path = path
        self.region = region
        self.account = account
        self._lock = threading.Lock()
        self.alarms: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.tags: dict[str, dict[str, str]] = {}
        """Each alarm's tags, by alarm name (kept apart so DescribeAlarms never shows them, as on AWS)."""
        self.composites: dict[str, dict[str, Any]] = {}
        """The composite alarms, by name (alarm names are unique across both kinds)."""
        self._rules: dict[str, Rule] = {}
        if path.exists():
            saved = json.loads(path.read_text())
            self.alarms, self.history = saved["alarms"], saved["history"]
            self.tags = saved.get("tags", {})
            self.composites = saved.get("composites", {})
            for name, c in self.composites.items():
                self._rules[name] = parse_rule(c["AlarmRule"], self._name_of)

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        doc = {"alarms": self.alarms, "history": self.history, "tags": self.tags, "composites": self.composites}
        tmp.write_text(json.dumps(doc))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def _record(self, name: str, kind: str, summary: str, data: Mapping[str, Any], now: float) -> None:
        self.history.append(
            {
                "AlarmName": name,
                "AlarmType": "CompositeAlarm" if name in self.composites else "MetricAlarm",
                "at": now,
                "HistoryItemType": kind,
                "HistorySummary": summary,
                "HistoryData": data,
            }
        )
        self.history = [h for h in self.history if h["at"] >= now - _HISTORY_KEEP]

    # ---------------------------------------------------------------------------------------------- API

    def put_metric_alarm(self, p: Mapping[str, Any], now: float) -> dict[str, Any]:
        """PutMetricAlarm: on one metric, or on ``Metrics`` (metric math: one query returns the data the alarm
        watches); new alarms start INSUFFICIENT_DATA, an update keeps the state."""
        name = str(p["AlarmName"])
        if name in self.composites:
            raise MetricsError("ValidationError", f"The alarm {name} already exists as a composite alarm.")
        metrics = p.get("Metrics")
        if metrics:
            single = [k for k in _SINGLE_METRIC if p.get(k) is not None]
            if single:
                raise MetricsError(
                    "InvalidParameterCombination",
                    f"The parameters Metrics and {single[0]} are mutually exclusive and you have specified both.",
                )
            period = _math_alarm_period(metrics)
            statistic = extended = None
        else:
            for required in ("MetricName", "Namespace", "Period"):
                if p.get(required) is None:
                    raise MetricsError("MissingParameter", f"The parameter {required} is required.")
            statistic, extended = p.get("Statistic"), p.get("ExtendedStatistic")
            if (statistic is None) == (extended is None):
                raise MetricsError(
                    "InvalidParameterCombination", "Exactly one of Statistic and ExtendedStatistic must be specified."
                )
            if statistic is not None and statistic not in _STATISTICS:
                raise MetricsError(
                    "InvalidParameterValue", f"The value {statistic} for parameter Statistic is invalid."
                )
            if extended is not None and _stats.parse(str(extended)) is None:
                raise MetricsError(
                    "InvalidParameterValue", f"The value {extended} for parameter ExtendedStatistic is invalid."
                )
            period = _check_period(p["Period"])
        for required in ("EvaluationPeriods", "ComparisonOperator"):
            if p.get(required) is None:
                raise MetricsError("MissingParameter", f"The parameter {required} is required.")
        operator = str(p["ComparisonOperator"])
        if operator not in OPERATORS:
            raise MetricsError(
                "InvalidParameterValue", f"The value {operator} for parameter ComparisonOperator is not supported."
            )
        if p.get("Threshold") is None:
            raise MetricsError("MissingParameter", "The parameter Threshold is required.")
        periods = int(p["EvaluationPeriods"])
        to_alarm = int(p.get("DatapointsToAlarm") or periods)
        if periods < 1 or not 1 <= to_alarm <= periods:
            raise MetricsError(
                "InvalidParameterValue", "DatapointsToAlarm must be between 1 and EvaluationPeriods (at least 1)."
            )
        if period * periods > 86400 * 7:
            raise MetricsError(
                "InvalidParameterCombination", "The evaluation range (Period x EvaluationPeriods) exceeds 7 days."
            )
        low_count = p.get("EvaluateLowSampleCountPercentile")
        if low_count and low_count not in ("evaluate", "ignore"):
            raise MetricsError(
                "InvalidParameterValue",
                f"The value {low_count} for parameter EvaluateLowSampleCountPercentile is invalid.",
            )
        treat = str(p.get("TreatMissingData") or "missing")
        if treat not in _TREAT:
            raise MetricsError("InvalidParameterValue", f"The value {treat} for parameter TreatMissingData is invalid.")
        dims = _dimensions(p.get("Dimensions"))
        tags = _tags(p.get("Tags"))
        _check_actions(p)
        with self._lock:
            old = self.alarms.get(name)
            alarm = {
                **self._common(name, p, old, now),
                "EvaluationPeriods": periods,
                "DatapointsToAlarm": to_alarm,
                "Threshold": float(p["Threshold"]),
                "ComparisonOperator": operator,
                "TreatMissingData": treat,
            }
            if metrics:
                alarm["Metrics"] = [dict(q) for q in metrics]
            else:
                alarm["MetricName"] = str(p["MetricName"])
                alarm["Namespace"] = str(p["Namespace"])
                alarm["Dimensions"] = [{"Name": k, "Value": v} for k, v in sorted(dims.items())]
                alarm["Period"] = period
            if statistic is not None:
                alarm["Statistic"] = statistic
            elif extended is not None:
                alarm["ExtendedStatistic"] = extended
            if p.get("Unit"):
                alarm["Unit"] = p["Unit"]
            if low_count:
                alarm["EvaluateLowSampleCountPercentile"] = low_count
            self.alarms[name] = alarm
            if not old:
                self.tags[name] = {}
            # As AWS: tags given to PutMetricAlarm apply to a new alarm; an update adds or changes them.
            self.tags.setdefault(name, {}).update(tags)
            self._configured(name, bool(old), now)
            self._save()
        return {}

    def describe_alarms(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeAlarms by AlarmNames, AlarmNamePrefix, StateValue, ActionPrefix and AlarmTypes, or by
        ChildrenOfAlarmName / ParentsOfAlarmName; MaxRecords / NextToken page over both lists together."""
        names, prefix, state = p.get("AlarmNames"), p.get("AlarmNamePrefix"), p.get("StateValue")
        if names and prefix:
            raise MetricsError("InvalidParameterCombination", "AlarmNames and AlarmNamePrefix cannot both be given.")
        family = [k for k in ("ChildrenOfAlarmName", "ParentsOfAlarmName") if p.get(k)]
        action = p.get("ActionPrefix")
        with self._lock:
            if family:
                # As on AWS, these parameters go with MaxRecords and NextToken only.
                others = [k for k in p if p.get(k) and k not in (*family, "MaxRecords", "NextToken")]
                if others or len(family) > 1:
                    raise MetricsError(
                        "InvalidParameterCombination",
                        f"{family[0]} cannot be specified with {(family[1:] + others)[0]}.",
                    )
                of = str(p[family[0]])
                if family[0] == "ChildrenOfAlarmName":
                    rule = self._rules.get(of)
                    related = set(rule.children) if rule is not None else set()
                else:
                    related = {n for n, r in self._rules.items() if of in r.children}
                metric = [dict(a) for n, a in sorted(self.alarms.items()) if n in related]
                composite = [dict(c) for n, c in sorted(self.composites.items()) if n in related]
            else:
                types = _alarm_types(p)

                def wanted(n: str, a: Mapping[str, Any]) -> bool:
                    return (
                        (not names or n in names)
                        and (not prefix or n.startswith(prefix))
                        and (not state or a["StateValue"] == state)
                        and (
                            not action
                            or any(
                                x.startswith(action)
                                for k in ("OKActions", "AlarmActions", "InsufficientDataActions")
                                for x in a[k]
                            )
                        )
                    )

                metric = [dict(a) for n, a in sorted(self.alarms.items()) if "MetricAlarm" in types and wanted(n, a)]
                composite = [
                    dict(c) for n, c in sorted(self.composites.items()) if "CompositeAlarm" in types and wanted(n, c)
                ]
        for a in (*metric, *composite):
            for key in ("AlarmConfigurationUpdatedTimestamp", "StateUpdatedTimestamp", "StateTransitionedTimestamp"):
                a[key] = _ts(a[key])
        paged = _page("Alarms", [("MetricAlarms", a) for a in metric] + [("CompositeAlarms", c) for c in composite], p)
        out: dict[str, Any] = {
            "MetricAlarms": [a for k, a in paged["Alarms"] if k == "MetricAlarms"],
            "CompositeAlarms": [a for k, a in paged["Alarms"] if k == "CompositeAlarms"],
        }
        if "NextToken" in paged:
            out["NextToken"] = paged["NextToken"]
        return out

    def put_composite_alarm(self, p: Mapping[str, Any], now: float) -> dict[str, Any]:
        """PutCompositeAlarm: a new alarm starts INSUFFICIENT_DATA and is evaluated at once; an update replaces
        the configuration, keeps the state, and is evaluated at once too."""
        for required in ("AlarmName", "AlarmRule"):
            if not p.get(required):
                raise MetricsError("MissingParameter", f"The parameter {required} is required.")
        name = str(p["AlarmName"])
        _check_actions(p)
        tags = _tags(p.get("Tags"))
        try:
            rule = parse_rule(str(p["AlarmRule"]), self._name_of)
        except RuleError as exc:
            raise MetricsError("ValidationError", str(exc)) from None
        suppressor = p.get("ActionsSuppressor")
        if suppressor:
            for required in ("ActionsSuppressorWaitPeriod", "ActionsSuppressorExtensionPeriod"):
                if p.get(required) is None:
                    raise MetricsError(
                        "ValidationError", f"{required} is required when ActionsSuppressor is specified."
                    )
        with self._lock:
            if name in self.alarms:
                raise MetricsError("ValidationError", f"The alarm {name} already exists as a metric alarm.")
            missing = [c for c in rule.children if self._find(c) is None]
            if suppressor and self._find(self._name_of(str(suppressor))) is None:
                missing.append(str(suppressor))
            if missing:
                raise MetricsError(
                    "ValidationError",
                    f"Could not save the composite alarm as alarms [{', '.join(missing)}] in the alarm rule do not "
                    "exist",
                )
            old = self.composites.get(name)
            alarm = {**self._common(name, p, old, now), "AlarmRule": rule.text}
            if suppressor:
                alarm["ActionsSuppressor"] = str(suppressor)
                alarm["ActionsSuppressorWaitPeriod"] = int(p["ActionsSuppressorWaitPeriod"])
                alarm["ActionsSuppressorExtensionPeriod"] = int(p["ActionsSuppressorExtensionPeriod"])
                alarm["ActionsSuppressedBy"] = "None"
                alarm["ActionsSuppressedReason"] = ""
            self.composites[name] = alarm
            self._rules[name] = rule
            if not old:
                self.tags[name] = dict(tags)  # as on AWS: Tags apply to a new alarm only
            self._configured(name, bool(old), now)
            if self._evaluate_composite(name, now, None):
                self._cascade(name, now, {name})
            self._save()
        return {}

    def _configured(self, name: str, updated: bool, now: float) -> None:
        kind = "Update" if updated else "Create"
        summary = f'Alarm "{name}" {"updated" if updated else "created"}'
        self._record(name, "ConfigurationUpdate", summary, {"type": kind, "version": "1.0"}, now)

    def _common(self, name: str, p: Mapping[str, Any], old: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
        """The fields both kinds of alarm have, from a Put request; an update (``old``) keeps the state."""
        return {
            "AlarmName": name,
            "AlarmArn": self._arn(name),
            "AlarmDescription": p.get("AlarmDescription") or "",
            "AlarmConfigurationUpdatedTimestamp": _iso(now),
            "ActionsEnabled": bool(p.get("ActionsEnabled", True)),
            "OKActions": list(p.get("OKActions") or []),
            "AlarmActions": list(p.get("AlarmActions") or []),
            "InsufficientDataActions": list(p.get("InsufficientDataActions") or []),
            "StateValue": old["StateValue"] if old else "INSUFFICIENT_DATA",
            "StateReason": old["StateReason"] if old else "Unchecked: Initial alarm creation",
            "StateUpdatedTimestamp": old["StateUpdatedTimestamp"] if old else _iso(now),
            "StateTransitionedTimestamp": old["StateTransitionedTimestamp"] if old else _iso(now),
        }

    def _arn(self, name: str) -> str:
        return f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"

    def _name_of(self, ref: str) -> str:
        """The alarm a rule names: an ARN of this region and account names the alarm after ``alarm:``."""
        prefix = self._arn("")
        return ref[len(prefix) :] if ref.startswith(prefix) else ref

    def _find(self, name: str) -> dict[str, Any] | None:
        """The alarm called ``name``, of either kind (names are unique across both)."""
        return self.alarms.get(name) or self.composites.get(name)

    def _state_of(self, name: str) -> str:
        alarm = self._find(name)
        return str(alarm["StateValue"]) if alarm is not None else "INSUFFICIENT_DATA"

    def _cascade(self, changed: str, now: float, done: set[str]) -> None:
        """``changed`` changed state: evaluate the composite alarms that name it, then theirs, each at most once
        (``done``: those evaluated already in this change)."""
        queue = collections.deque([changed])
        while queue:
            child = queue.popleft()
            for parent, rule in list(self._rules.items()):
                if parent not in done and child in rule.children:
                    done.add(parent)
                    if self._evaluate_composite(parent, now, child):
                        queue.append(parent)

    def _evaluate_composite(self, name: str, now: float, trigger: str | None) -> bool:
        """Evaluate composite alarm ``name`` (its child ``trigger`` changed state, if given), without its
        parents; whether its state changed."""
        state = "ALARM" if self._rules[name].holds(self._state_of) else "OK"
        alarm = self.composites[name]
        if alarm["StateValue"] == state:
            return False
        if trigger is None:
            # No child just changed (a new or updated rule): the child that changed last stands for the cause.
            known = {c: a for c in self._rules[name].children if (a := self._find(c)) is not None}
            trigger = max(known, key=lambda c: known[c]["StateTransitionedTimestamp"], default=None)
        if trigger is None:
            reason, data = f"The alarm rule evaluated to {'TRUE' if state == 'ALARM' else 'FALSE'}", None
        else:
            child = self._find(trigger)
            assert child is not None, trigger  # it has just changed state, or was found above
            at = _ts(child["StateTransitionedTimestamp"]).timestamp()
            reason = (
                f"{self._arn(trigger)} transitioned to {child['StateValue']} at "
                f"{dt.datetime.fromtimestamp(at, dt.UTC):%A %d %B, %Y %H:%M:%S} UTC"
            )
            data = json.dumps(
                {
                    "triggeringAlarms": [
                        {
                            "arn": self._arn(trigger),
                            "state": {"value": child["StateValue"], "timestamp": _java_time(at)},
                        }
                    ]
                }
            )
        self._transition(name, state, reason, now, data, cascade=False)
        return True

    def _alarm_of(self, arn: Any) -> str:
        """The name of the alarm ``arn`` names; ResourceNotFoundException if there is none."""
        prefix = self._arn("")
        name = str(arn)[len(prefix) :] if str(arn).startswith(prefix) else None
        if name is None or self._find(name) is None:
            raise MetricsError("ResourceNotFoundException", f"Resource {arn} does not exist.")
        return name

    def tag_resource(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """TagResource on an alarm (by its ARN): adds or changes its tags."""
        tags = _tags(p.get("Tags"))
        with self._lock:
            self.tags.setdefault(self._alarm_of(p.get("ResourceARN")), {}).update(tags)
            self._save()
        return {}

    def untag_resource(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """UntagResource on an alarm (by its ARN): removes the tags with these keys (absent ones ignored)."""
        with self._lock:
            kept = self.tags.setdefault(self._alarm_of(p.get("ResourceARN")), {})
            for key in p.get("TagKeys") or ():
                kept.pop(str(key), None)
            self._save()
        return {}

    def list_tags_for_resource(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """ListTagsForResource on an alarm (by its ARN)."""
        with self._lock:
            tags = self.tags.get(self._alarm_of(p.get("ResourceARN")), {})
            return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}

    def describe_alarms_for_metric(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeAlarmsForMetric: the alarms on one metric (Namespace, MetricName, and Dimensions exactly),
        narrowed by Statistic, ExtendedStatistic, Period and Unit when given."""
        dims = sorted(_dimensions(p.get("Dimensions")).items())
        with self._lock:
            names = [
                n
                for n, a in sorted(self.alarms.items())
                if a.get("Namespace") == p["Namespace"]
                and a.get("MetricName") == p["MetricName"]
                and [(d["Name"], d["Value"]) for d in a.get("Dimensions", ())] == dims
                and all(
                    p.get(k) is None or a.get(k) == p[k] for k in ("Statistic", "ExtendedStatistic", "Period", "Unit")
                )
            ]
        if not names:
            return {"MetricAlarms": []}
        return {"MetricAlarms": self.describe_alarms({"AlarmNames": names, "MaxRecords": 100})["MetricAlarms"]}

    def delete_alarms(self, names: Sequence[str], now: float) -> dict[str, Any]:
        """DeleteAlarms: all or nothing; an unknown name is ResourceNotFound, and an alarm a composite alarm
        (not deleted in the same call) names is refused, as CloudWatch does."""
        with self._lock:
            missing = [n for n in names if self._find(n) is None]
            if missing:
                raise MetricsError("ResourceNotFound", f"The alarm(s) {', '.join(missing)} do not exist.")
            going = list(dict.fromkeys(names))
            gone = set(going)
            held = [n for n in going if any(n in r.children for c, r in self._rules.items() if c not in gone)]
            if held:
                raise MetricsError(
                    "ValidationError",
                    f"Cannot delete {','.join(held)} as there are composite alarm(s) depending on "
                    f"{'it' if len(held) == 1 else 'them'}.",
                )
            for n in going:
                self._record(n, "ConfigurationUpdate", f'Alarm "{n}" deleted', {"type": "Delete"}, now)
                self.alarms.pop(n, None)
                self.composites.pop(n, None)
                self._rules.pop(n, None)
                self.tags.pop(n, None)
            self._save()
        return {}

    def set_actions_enabled(self, names: Sequence[str], enabled: bool, now: float) -> dict[str, Any]:
        """EnableAlarmActions / DisableAlarmActions (unknown names are skipped, as CloudWatch does)."""
        with self._lock:
            for n in names:
                alarm = self._find(n)
                if alarm is not None:
                    alarm["ActionsEnabled"] = enabled
                    alarm["AlarmConfigurationUpdatedTimestamp"] = _iso(now)
            self._save()
        return {}

    def set_alarm_state(self, p: Mapping[str, Any], now: float) -> dict[str, Any]:
        """SetAlarmState: until the next evaluation, which may set it back."""
        name, state = str(p["AlarmName"]), str(p["StateValue"])
        if state not in _STATES:
            raise MetricsError("InvalidParameterValue", f"The value {state} for parameter StateValue is invalid.")
        data = p.get("StateReasonData")
        if data is not None:
            try:
                json.loads(data)
            except ValueError:
                raise MetricsError("InvalidFormat", "StateReasonData is not valid JSON.") from None
        with self._lock:
            if self._find(name) is None:
                raise MetricsError("ResourceNotFound", f"The alarm {name} does not exist.")
            self._transition(name, state, str(p["StateReason"]), now, None if data is None else str(data))
            self._save()
        return {}

    def describe_alarm_history(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeAlarmHistory by AlarmName, HistoryItemType, StartDate / EndDate; newest first by default."""
        start = _epoch(p["StartDate"]) if p.get("StartDate") else 0.0
        end = _epoch(p["EndDate"]) if p.get("EndDate") else float("inf")
        types = _alarm_types(p)
        with self._lock:
            items = [
                {
                    "AlarmName": h["AlarmName"],
                    "AlarmType": h.get("AlarmType", "MetricAlarm"),
                    "Timestamp": dt.datetime.fromtimestamp(h["at"], dt.UTC),
                    "HistoryItemType": h["HistoryItemType"],
                    "HistorySummary": h["HistorySummary"],
                    "HistoryData": json.dumps(h["HistoryData"]),
                }
                for h in self.history
                if (not p.get("AlarmName") or h["AlarmName"] == p["AlarmName"])
                and (not p.get("HistoryItemType") or h["HistoryItemType"] == p["HistoryItemType"])
                and start <= h["at"] <= end
                and h.get("AlarmType", "MetricAlarm") in types
            ]
        if p.get("ScanBy", "TimestampDescending") != "TimestampAscending":
            items.reverse()
        return _page("AlarmHistoryItems", items, p)

    # ------------------------------------------------------------------------------------- evaluation

    def _transition(
        self,
        name: str,
        state: str,
        reason: str,
        now: float,
        data: str | None = None,
        *,
        cascade: bool = True,
    ) -> None:
        """Set ``name``'s state; on a change, the composite alarms that name it follow (with ``cascade``)."""
        alarm = self._find(name)
        assert alarm is not None, name
        old, old_reason = alarm["StateValue"], alarm["StateReason"]
        alarm["StateReason"] = reason
        alarm.pop("StateReasonData", None)
        if data is not None:
            alarm["StateReasonData"] = data
        alarm["StateUpdatedTimestamp"] = _iso(now)
        if old == state:
            return
        alarm["StateValue"] = state
        alarm["StateTransitionedTimestamp"] = _iso(now)
        self._record(
            name,
            "StateUpdate",
            f"Alarm updated from {old} to {state}",
            {
                "version": "1.0",
                "oldState": {"stateValue": old, "stateReason": old_reason},
                "newState": {
                    "stateValue": state,
                    "stateReason": reason,
                    **({} if data is None else {"stateReasonData": json.loads(data)}),
                },
            },
            now,
        )
        if cascade:
            self._cascade(name, now, set())

    def evaluate_all(self, store: MetricStore, now: float) -> int:
        """Evaluate every alarm on the store's data; returns how many changed state."""
        with self._lock:
            alarms = [dict(a) for a in self.alarms.values()]
        changed = 0
        for a in alarms:
            n = a["EvaluationPeriods"]
            span = n + _EXTRA_PERIODS  # the evaluation range
            period = _math_alarm_period(a["Metrics"]) if "Metrics" in a else a["Period"]
            end = now - now % period
            start = end - span * period
            try:
                by_start = (
                    _math_values(store, a["Metrics"], start, end, now)
                    if "Metrics" in a
                    else _values(store, a, start, end, now)
                )
            except MetricsError as exc:  # the data do not fit the expression (an array of series, say)
                log.debug("alarm %s: %s", a["AlarmName"], exc.message)
                by_start = {}
            values = [by_start.get(start + k * period) for k in range(span)]
            state = evaluate(
                values,
                periods=n,
                threshold=a["Threshold"],
                operator=a["ComparisonOperator"],
                datapoints_to_alarm=a["DatapointsToAlarm"],
                treat_missing=a["TreatMissingData"],
                current=a["StateValue"],
            )
            reason, data = _reason(a, state, values[-n:], end - n * period, period, now)
            with self._lock:
                current = self.alarms.get(a["AlarmName"])
                if current is None or current["StateValue"] == state:
                    continue
                self._transition(a["AlarmName"], state, reason, now, data)
                changed += 1
        if changed:
            with self._lock:
                self._save()
        return changed


_WORDS = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}


def _java(value: float) -> str:
    """A number as CloudWatch (Java's Double.toString) writes it in a state reason: 1.0, 0.25, 1.5E7."""
    if value == 0 or 1e-3 <= abs(value) < 1e7 or not math.isfinite(value):
        text = repr(float(value))
        return text if "e" not in text else _java_exponent(value)
    return _java_exponent(value)


def _java_exponent(value: float) -> str:
    sign, digits, exponent = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{len(digits) - 1 + exponent}"


def _reason(
    a: Mapping[str, Any], state: str, last: Sequence[float | None], start: float, period: int, now: float
) -> tuple[str, str]:
    """The alarm's StateReason and StateReasonData after an evaluation, in CloudWatch's words and shape:
    ``Threshold Crossed: 1 out of the last 1 datapoints [5.0 (07/12/26 03:40:00)] was greater than the threshold
    (1.0) (minimum 1 datapoint for OK -> ALARM transition).``, or ``Insufficient Data: 3 datapoints were
    unknown.``; the data the JSON CloudWatch puts in StateReasonData."""
    threshold, operator = float(a["Threshold"]), str(a["ComparisonOperator"])
    present = [(start + k * period, v) for k, v in enumerate(last) if v is not None]
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _java_time(now),
        "startDate": _java_time(start),
    }
    if a.get("Statistic") or a.get("ExtendedStatistic"):
        data["statistic"] = a.get("Statistic") or a.get("ExtendedStatistic")
    data.update({"period": period, "recentDatapoints": [v for _, v in present], "threshold": threshold})
    if state == "INSUFFICIENT_DATA":
        unknown = len(last) - len(present)
        return f"Insufficient Data: {unknown} datapoint{'s were' if unknown != 1 else ' was'} unknown.", json.dumps(
            data
        )
    compare = OPERATORS[operator]
    alarm = state == "ALARM"
    shown = [(t, v) for t, v in reversed(present) if compare(v, threshold) == alarm]
    needed = int(a["DatapointsToAlarm"]) if alarm else len(last) - int(a["DatapointsToAlarm"]) + 1
    listed = ", ".join(f"{_java(v)} ({dt.datetime.fromtimestamp(t, dt.UTC):%d/%m/%y %H:%M:%S})" for t, v in shown)
    reason = (
        f"Threshold Crossed: {len(shown)} out of the last {len(last)} datapoints [{listed}] "
        f"{'was' if len(shown) == 1 else 'were'} {'' if alarm else 'not '}{_WORDS[operator]} the threshold "
        f"({_java(threshold)}) (minimum {needed} datapoint{'' if needed == 1 else 's'} for "
        f"{'OK -> ALARM' if alarm else 'ALARM -> OK'} transition)."
    )
    return reason, json.dumps(data)


def _java_time(at: float) -> str:
    """A time as CloudWatch writes it in StateReasonData: 2019-10-01T13:56:40.985+0000."""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


_SINGLE_METRIC = ("MetricName", "Namespace", "Dimensions", "Statistic", "ExtendedStatistic", "Period", "Unit")


def _math_alarm_period(metrics: Sequence[Mapping[str, Any]]) -> int:
    """The period of an alarm on ``Metrics``, checked as CloudWatch checks them: valid queries, at most
    :data:`_MAX_ALARM_METRICS` metrics, exactly one returning data; the period is that query's (its Period, or
    the shortest of the metrics' for an expression)."""
    order = check_queries(metrics, "Metrics")
    returned = [q for q in order if q.returned]
    if len(returned) != 1:
        raise MetricsError("ValidationError", "Exactly one element of the metrics list should return data.")
    if sum(q.stat is not None for q in order) > _MAX_ALARM_METRICS:
        raise MetricsError("ValidationError", f"An alarm on metric math can use at most {_MAX_ALARM_METRICS} metrics.")
    if returned[0].period:
        return returned[0].period
    return min((q.period for q in order if q.stat is not None), default=60)


def _math_values(
    store: MetricStore, metrics: Sequence[Mapping[str, Any]], start: float, end: float, now: float
) -> dict[float, float | None]:
    """The returned query's values by period start, for an alarm on ``Metrics``."""
    order = check_queries(metrics, "Metrics")
    values = run_queries(store, order, start, end, now=now)
    value = values[next(q.id for q in order if q.returned)]
    if not isinstance(value, TimeSeries):
        raise MetricsError("ValidationError", "The alarm's expression returns more than one time series.")
    return dict(value.points)


def _values(
    store: MetricStore, a: Mapping[str, Any], start: float, end: float, now: float
) -> dict[float, float | None]:
    """A single-metric alarm's values by period start."""
    dims = {d["Name"]: d["Value"] for d in a["Dimensions"]}
    stat = a.get("Statistic") or a["ExtendedStatistic"]
    points = store.query(
        a["Namespace"],
        a["MetricName"],
        dims,
        start,
        end,
        a["Period"],
        unit=a.get("Unit"),
        percentiles=stat not in _STATISTICS,
        now=now,
    )
    return {point.at: point.statistic(stat) for point in points}


def _check_actions(p: Mapping[str, Any]) -> None:
    for key in ("OKActions", "AlarmActions", "InsufficientDataActions"):
        for action in p.get(key) or ():
            if not _ARN.match(str(action)):
                # CloudWatch's answer to an action that is not an ARN (an SNS topic's name, a policy's name).
                raise MetricsError("ValidationError", f"Invalid arn syntax: {action}")


def _tags(items: Any) -> dict[str, str]:
    """Tags as given to PutMetricAlarm or TagResource, checked (keys 1-128 characters, values up to 256)."""
    tags: dict[str, str] = {}
    for item in items or ():
        key, value = str(item.get("Key") or ""), str(item.get("Value") or "")
        if not 1 <= len(key) <= 128 or len(value) > 256 or key.startswith("aws:"):
            raise MetricsError("InvalidParameterValue", f"The tag {key!r} is not valid.")
        tags[key] = value
    return tags


def _alarm_types(p: Mapping[str, Any]) -> list[str]:
    """The request's AlarmTypes (metric alarms only when omitted, as CloudWatch), checked."""
    types = list(p.get("AlarmTypes") or ["MetricAlarm"])
    for kind in types:
        if kind not in ("MetricAlarm", "CompositeAlarm"):
            raise MetricsError("InvalidParameterValue", f"The value {kind} for parameter AlarmTypes is invalid.")
    return types


def _page(key: str, items: Sequence[Any], p: Mapping[str, Any]) -> dict[str, Any]:
    size = int(p.get("MaxRecords") or 50)
    if not 1 <= size <= 100:
        raise MetricsError("InvalidParameterValue", "MaxRecords must be between 1 and 100.")
    try:
        offset = int(p.get("NextToken") or 0)
    except ValueError:
        raise MetricsError("InvalidNextToken", "The NextToken is not valid.") from None
    out: dict[str, Any] = {key: items[offset : offset + size]}
    if offset + size < len(items):
        out["NextToken"] = str(offset + size)
    return out


async def run_alarms(book: AlarmBook, store: MetricStore, interval: float = 10.0) -> None:
    """Evaluate every alarm each ``interval`` seconds until cancelled (in a thread: it reads the disk)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(book.evaluate_all, store, time.time())
        except Exception:
            log.exception("alarm evaluation failed")
