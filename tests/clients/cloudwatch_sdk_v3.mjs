// The AWS SDK for JavaScript v3 (@aws-sdk/client-cloudwatch: JSON 1.0, AWS-query-compatible errors) against
// Borealis's CloudWatch: values put in one second aggregated, a percentile, GetMetricData paged by MaxDatapoints
// with the SDK's paginator, alarm ARNs refused as AWS does, DescribeAlarms' two lists, alarm tags, a composite
// alarm that follows its child and keeps it from being deleted. Run by
// tests/integration/monitoring/test_cloudwatch_js.py with BOREALIS_URL, NAMESPACE and AWS credentials in the
// environment; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import {
  CloudWatchClient,
  PutMetricDataCommand,
  GetMetricStatisticsCommand,
  PutMetricAlarmCommand,
  PutCompositeAlarmCommand,
  SetAlarmStateCommand,
  DescribeAlarmsCommand,
  ListTagsForResourceCommand,
  DeleteAlarmsCommand,
  paginateGetMetricData,
} from "@aws-sdk/client-cloudwatch";

const cw = new CloudWatchClient({ endpoint: process.env.BOREALIS_URL, region: "us-east-1", maxAttempts: 1 });
const Namespace = process.env.NAMESPACE;
const minute = new Date(Math.floor(Date.now() / 60000) * 60000 - 120000);
const datum = { MetricName: "Latency", Unit: "Milliseconds", StorageResolution: 1 };

// Three minutes, each: 1, 2 and 3 in one call, then 10 twice (Values/Counts) in another, all in one second.
for (let m = 0; m < 3; m++) {
  const Timestamp = new Date(minute.getTime() - m * 60000);
  await cw.send(new PutMetricDataCommand({ Namespace, MetricData: [1, 2, 3].map((Value) => ({ ...datum, Timestamp, Value })) }));
  await cw.send(new PutMetricDataCommand({ Namespace, MetricData: [{ ...datum, Timestamp, Values: [10], Counts: [2] }] }));
}
const window = { StartTime: new Date(minute.getTime() - 120000), EndTime: new Date(minute.getTime() + 60000) };
const stats = await cw.send(
  new GetMetricStatisticsCommand({
    Namespace,
    MetricName: "Latency",
    Period: 60,
    Statistics: ["SampleCount", "Sum", "Maximum"],
    ExtendedStatistics: ["p50"],
    ...window,
  }),
);
assert.equal(stats.Datapoints.length, 3);
for (const p of stats.Datapoints) {
  assert.deepEqual([p.SampleCount, p.Sum, p.Maximum, p.ExtendedStatistics.p50, p.Unit], [5, 26, 10, 3, "Milliseconds"]);
}

// Two points a page: the paginator follows NextToken until every point came, newest first.
const query = { Id: "sum", MetricStat: { Metric: { Namespace, MetricName: "Latency" }, Period: 60, Stat: "Sum" } };
const values = [];
let pages = 0;
for await (const page of paginateGetMetricData({ client: cw }, { MetricDataQueries: [query], MaxDatapoints: 2, ...window })) {
  pages += 1;
  for (const r of page.MetricDataResults) values.push(...r.Values);
}
assert.deepEqual(values, [26, 26, 26]);
assert.equal(pages, 2);

const alarm = {
  AlarmName: `${Namespace}-slow`,
  Namespace,
  MetricName: "Latency",
  Statistic: "Maximum",
  Period: 60,
  EvaluationPeriods: 1,
  Threshold: 100,
  ComparisonOperator: "GreaterThanThreshold",
};
await assert.rejects(cw.send(new PutMetricAlarmCommand({ ...alarm, AlarmActions: ["ops-topic"] })), (err) => {
  assert.equal(err.name, "ValidationException"); // the awsQueryCompatible code ValidationError, as AWS
  assert.equal(err.message, "Invalid arn syntax: ops-topic");
  return true;
});
await cw.send(
  new PutMetricAlarmCommand({
    ...alarm,
    AlarmActions: ["arn:aws:sns:us-east-1:000000000000:ops"],
    Tags: [{ Key: "team", Value: "db" }],
  }),
);
const described = await cw.send(new DescribeAlarmsCommand({ AlarmNames: [alarm.AlarmName] }));
assert.deepEqual(described.CompositeAlarms, []);
assert.equal(described.MetricAlarms[0].StateReason, "Unchecked: Initial alarm creation");
const tags = await cw.send(new ListTagsForResourceCommand({ ResourceARN: described.MetricAlarms[0].AlarmArn }));
assert.deepEqual(tags.Tags, [{ Key: "team", Value: "db" }]);

// A composite alarm on it: evaluated at once (OK), ALARM once its child is, and the child cannot go first.
const composite = `${Namespace}-page`;
await cw.send(new PutCompositeAlarmCommand({ AlarmName: composite, AlarmRule: `ALARM("${alarm.AlarmName}")` }));
const kinds = { AlarmNames: [composite], AlarmTypes: ["CompositeAlarm"] };
assert.equal((await cw.send(new DescribeAlarmsCommand(kinds))).CompositeAlarms[0].StateValue, "OK");
await cw.send(new SetAlarmStateCommand({ AlarmName: alarm.AlarmName, StateValue: "ALARM", StateReason: "test" }));
const parent = (await cw.send(new DescribeAlarmsCommand(kinds))).CompositeAlarms[0];
assert.equal(parent.StateValue, "ALARM");
assert.ok(parent.StateTransitionedTimestamp instanceof Date);
assert.equal(JSON.parse(parent.StateReasonData).triggeringAlarms[0].arn, described.MetricAlarms[0].AlarmArn);
await assert.rejects(cw.send(new DeleteAlarmsCommand({ AlarmNames: [alarm.AlarmName] })), (err) => {
  assert.equal(err.name, "ValidationException");
  assert.equal(err.message, `Cannot delete ${alarm.AlarmName} as there are composite alarm(s) depending on it.`);
  return true;
});
await cw.send(new DeleteAlarmsCommand({ AlarmNames: [composite] }));
await cw.send(new DeleteAlarmsCommand({ AlarmNames: [alarm.AlarmName] }));
console.log("ok");
