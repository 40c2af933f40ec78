// The seed's "IAM Database Authentication" example against a cluster endpoint: a pg Pool whose password is
// a token from @aws-sdk/rds-signer, over TLS verified against Borealis's CA. Run by
// tests/integration/test_endpoint_iam.py with DB_HOST, DB_PORT, DB_USER, DB_CA and AWS credentials in the
// environment; prints "ok" or exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import fs from "node:fs";
import pg from "pg";
import { Signer } from "@aws-sdk/rds-signer";

const signer = new Signer({
  hostname: process.env.DB_HOST,
  port: Number(process.env.DB_PORT),
  username: process.env.DB_USER,
  region: process.env.AWS_REGION,
});

const pool = new pg.Pool({
  host: process.env.DB_HOST,
  port: Number(process.env.DB_PORT),
  user: process.env.DB_USER,
  database: "postgres",
  password: () => signer.getAuthToken(),
  ssl: { rejectUnauthorized: true, ca: fs.readFileSync(process.env.DB_CA, "utf8") },
  max: 4,
});

const results = await Promise.all(
  Array.from({ length: 8 }, (_, i) => pool.query("SELECT current_user AS u, $1::int * 2 AS d", [i])),
);
results.forEach((res, i) => {
  assert.equal(res.rows[0].u, process.env.DB_USER);
  assert.equal(res.rows[0].d, 2 * i);
});
const client = await pool.connect();
assert.equal(client.connection.stream.encrypted, true);
client.release();
await pool.end();
console.log("ok");
