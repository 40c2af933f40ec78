// The npm data-api-client 1.3.1 (on the AWS SDK v2 `aws-sdk`) against Borealis' Data API.
// Run by tests/integration/dataapi/test_dataapi_clients.py; exits non-zero on the first failed assertion.
const assert = require("node:assert/strict");

const data = require("./dataapi_client_setup.cjs");

(async () => {
  let out = await data.query("SELECT :id AS id, :name AS name, :nothing::text AS nothing, :when AS w", {
    id: 7,
    name: "Zoë",
    nothing: null,
    when: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)),
  });
  // It reads the timestamp column back into a Date, from the metadata's typeName.
  assert.equal(out.records[0].w.toISOString(), "2024-01-02T03:04:05.006Z");
  delete out.records[0].w;
  assert.deepEqual(out.records, [{ id: 7, name: "Zoë", nothing: null }]);

  await data.query("DROP TABLE IF EXISTS dapi_dac");
  await data.query("CREATE TABLE dapi_dac (id int PRIMARY KEY, v text, b bytea)");
  // Nested arrays of parameters become a BatchExecuteStatement.
  out = await data.query("INSERT INTO dapi_dac (id, v, b) VALUES (:id, :v, :b)", [
    [{ id: 1, v: "a", b: Buffer.from([1, 2]) }],
    [{ id: 2, v: "b", b: Buffer.from([3]) }],
  ]);
  assert.equal(out.updateResults.length, 2);

  out = await data.query("SELECT id, v, b FROM dapi_dac ORDER BY id", { hydrateColumnNames: true });
  assert.equal(out.records.length, 2);
  assert.equal(out.records[0].v, "a");
  assert.deepEqual([...out.records[0].b], [1, 2]);

  const results = await data
    .transaction()
    .query("INSERT INTO dapi_dac (id, v) VALUES (:id, :v)", { id: 3, v: "c" })
    .query("UPDATE dapi_dac SET v = :v WHERE id = :id", { id: 1, v: "z" })
    .commit();
  assert.equal(results.length, 3); // two queries and the commit status
  out = await data.query("SELECT v FROM dapi_dac ORDER BY id");
  assert.deepEqual(out.records.map((r) => r.v), ["z", "b", "c"]);

  await assert.rejects(data.query("SELECT nope FROM dapi_dac"), (err) => {
    assert.equal(err.code, "DatabaseErrorException");
    assert.equal(err.statusCode, 400);
    return true;
  });
  console.log("data-api-client ok");
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
