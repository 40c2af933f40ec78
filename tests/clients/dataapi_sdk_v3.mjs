// The AWS SDK for JavaScript v3 (@aws-sdk/client-rds-data) against Borealis' Data API.
// Run by tests/integration/dataapi/test_dataapi_clients.py with BOREALIS_URL, RESOURCE_ARN, SECRET_ARN and
// AWS credentials in the environment; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import {
  RDSDataClient,
  ExecuteStatementCommand,
  BatchExecuteStatementCommand,
  BeginTransactionCommand,
  CommitTransactionCommand,
  RollbackTransactionCommand,
} from "@aws-sdk/client-rds-data";

const client = new RDSDataClient({ endpoint: process.env.BOREALIS_URL, region: "us-east-1", maxAttempts: 1 });
const base = { resourceArn: process.env.RESOURCE_ARN, secretArn: process.env.SECRET_ARN };
const run = (sql, extra = {}) => client.send(new ExecuteStatementCommand({ ...base, sql, ...extra }));

let out = await run("SELECT :i AS i, :s AS s, :b AS b, :d AS d, :n::text AS n, :blob AS blob, :ts AS ts", {
  parameters: [
    { name: "i", value: { longValue: 42 } },
    { name: "s", value: { stringValue: "héllo" } },
    { name: "b", value: { booleanValue: true } },
    { name: "d", value: { doubleValue: 1.5 } },
    { name: "n", value: { isNull: true } },
    { name: "blob", value: { blobValue: new Uint8Array([0, 1, 255]) } },
    { name: "ts", value: { stringValue: "2024-01-02 03:04:05.006" }, typeHint: "TIMESTAMP" },
  ],
  includeResultMetadata: true,
});
const row = out.records[0];
assert.equal(row[0].longValue, 42);
assert.equal(row[1].stringValue, "héllo");
assert.equal(row[2].booleanValue, true);
assert.equal(row[3].doubleValue, 1.5);
assert.equal(row[4].isNull, true);
assert.deepEqual(Array.from(row[5].blobValue), [0, 1, 255]);
assert.equal(row[6].stringValue, "2024-01-02 03:04:05.006");
assert.equal(out.columnMetadata.length, 7);
assert.equal(out.columnMetadata[0].label, "i");

// Non-finite doubles arrive as the strings "NaN", "Infinity" and "-Infinity", as Smithy's JSON protocols send
// them, and the SDK reads them back as numbers; twice, the second run going through the direct lane.
for (let i = 0; i < 2; i++) {
  const [nan, inf, arr] = (await run("SELECT 'NaN'::float8, '-Infinity'::float8, ARRAY['Infinity']::float8[]")).records[0];
  assert.ok(Number.isNaN(nan.doubleValue));
  assert.equal(inf.doubleValue, -Infinity);
  assert.deepEqual(arr.arrayValue.doubleValues, [Infinity]);
}

out = await run("SELECT 1 AS a, ARRAY[1,2] AS arr", { formatRecordsAs: "JSON" });
assert.deepEqual(JSON.parse(out.formattedRecords), [{ a: 1, arr: [1, 2] }]);

await run("DROP TABLE IF EXISTS dapi_js");
await run("CREATE TABLE dapi_js (id int PRIMARY KEY)");
const batch = await client.send(
  new BatchExecuteStatementCommand({
    ...base,
    sql: "INSERT INTO dapi_js VALUES (:id)",
    parameterSets: [[{ name: "id", value: { longValue: 1 } }], [{ name: "id", value: { longValue: 2 } }]],
  }),
);
assert.equal(batch.updateResults.length, 2);

const { transactionId } = await client.send(new BeginTransactionCommand(base));
await run("INSERT INTO dapi_js VALUES (3)", { transactionId });
assert.equal(
  (await client.send(new RollbackTransactionCommand({ ...base, transactionId }))).transactionStatus,
  "Rollback Complete",
);
const tx2 = (await client.send(new BeginTransactionCommand(base))).transactionId;
await run("INSERT INTO dapi_js VALUES (4)", { transactionId: tx2 });
assert.equal(
  (await client.send(new CommitTransactionCommand({ ...base, transactionId: tx2 }))).transactionStatus,
  "Transaction Committed",
);
out = await run("SELECT count(*) FROM dapi_js");
assert.equal(out.records[0][0].longValue, 3);

await assert.rejects(run("SELECT * FROM dapi_js_missing"), (err) => {
  assert.equal(err.name, "DatabaseErrorException");
  assert.equal(err.$metadata.httpStatusCode, 400);
  assert.match(err.message, /^ERROR: relation "dapi_js_missing" does not exist\n {2}Position: 15; SQLState: 42P01$/);
  return true;
});
await assert.rejects(run("SELECT 1; SELECT 2"), (err) => err.name === "ValidationException");
await assert.rejects(run("SELECT 1", { transactionId: "nope-nope" }), (err) => err.name === "TransactionNotFoundException");
console.log("sdk-v3 ok");
