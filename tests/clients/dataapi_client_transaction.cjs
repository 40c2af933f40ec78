// data-api-client's transaction example, as its README gives it: transaction().query(...).query(fn)
// .rollback(fn).commit(), once committing and once failing (the rollback callback runs, nothing stays).
// Run by tests/integration/dataapi/test_dataapi_clients.py; exits non-zero on the first failed assertion.
const assert = require("node:assert/strict");

const data = require("./dataapi_client_setup.cjs");

(async () => {
  await data.query("DROP TABLE IF EXISTS dac_pets");
  await data.query("CREATE TABLE dac_pets (id serial PRIMARY KEY, name text NOT NULL, age int)");

  // The README's example; on PostgreSQL the new id comes from RETURNING (insertId is MySQL's).
  let rolledBack = null;
  const results = await data
    .transaction()
    .query("INSERT INTO dac_pets (name) VALUES(:name) RETURNING id", { name: "Tiger" })
    .query((r) => ["UPDATE dac_pets SET age = :age WHERE id = :id", { age: 4, id: r.records[0].id }])
    .rollback((e, status) => {
      rolledBack = [e, status];
    })
    .commit();
  assert.equal(rolledBack, null);
  assert.equal(results.length, 3);
  assert.deepEqual(results[2], { transactionStatus: "Transaction Committed" });
  let out = await data.query("SELECT name, age FROM dac_pets");
  assert.deepEqual(out.records, [{ name: "Tiger", age: 4 }]);

  // A failing query: the client rolls back, calls the rollback callback and rejects the commit.
  await assert.rejects(
    data
      .transaction()
      .query("INSERT INTO dac_pets (name) VALUES(:name)", { name: "Lion" })
      .query("INSERT INTO dac_pets (name) VALUES(:name)", { name: null }) // NOT NULL: fails
      .rollback((e, status) => {
        rolledBack = [e, status];
      })
      .commit(),
    (err) => {
      assert.equal(err.code, "DatabaseErrorException");
      assert.match(err.message, /SQLState: 23502/);
      return true;
    },
  );
  assert.ok(rolledBack, "the rollback callback ran");
  assert.deepEqual(rolledBack[1], { transactionStatus: "Rollback Complete" });
  out = await data.query("SELECT name FROM dac_pets ORDER BY id");
  assert.deepEqual(out.records, [{ name: "Tiger" }]);

  await data.query("DROP TABLE dac_pets");
  console.log("data-api-client transaction ok");
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
