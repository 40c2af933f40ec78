// node-postgres (npm `pg`) through a Borealis RDS Proxy endpoint that requires TLS, with IAMAuth ENABLED.
// Run by tests/integration/proxy/test_node_pg.py with PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD,
// PROXY_CA (DATA_DIR/ca/root.crt) and AWS credentials in the environment; exits non-zero on the first
// failed assertion.
import assert from "node:assert/strict";
import fs from "node:fs";
import pg from "pg";
import { Signer } from "@aws-sdk/rds-signer";

const host = process.env.PROXY_HOST;
const port = Number(process.env.PROXY_PORT);
const user = process.env.PROXY_USER;
// verify-full: the proxy's certificate must chain to Borealis's CA and name the endpoint's host.
const ssl = { ca: fs.readFileSync(process.env.PROXY_CA, "utf8"), rejectUnauthorized: true };
const base = { host, port, user, database: "postgres", ssl };

// 1. Password over TLS; named prepared queries across transactions (each transaction may run on another
//    server connection, where the proxy prepares the statement again).
const client = new pg.Client({ ...base, password: process.env.PROXY_PASSWORD });
await client.connect();
assert.equal(client.connection.stream.encrypted, true);
for (let i = 0; i < 20; i++) {
  const res = await client.query({ name: "add", text: "SELECT $1::int + $2::int AS s", values: [i, 1] });
  assert.equal(res.rows[0].s, i + 1);
}
await client.query("BEGIN");
const inTx = await client.query({ name: "add", text: "SELECT $1::int + $2::int AS s", values: [40, 2] });
assert.equal(inTx.rows[0].s, 42);
await client.query("COMMIT");

// 2. Many clients, each with the same statement names, interleaved over the small pool.
const pool = new pg.Pool({ ...base, password: process.env.PROXY_PASSWORD, max: 12 });
await Promise.all(
  Array.from({ length: 60 }, async (_, i) => {
    const res = await pool.query({ name: "twice", text: "SELECT $1::int * 2 AS d", values: [i] });
    assert.equal(res.rows[0].d, 2 * i);
    const txt = await pool.query({ name: "echo", text: "SELECT $1::text AS t", values: [`v${i}`] });
    assert.equal(txt.rows[0].t, `v${i}`);
  }),
);
await pool.end();

// 3. An IAM auth token from @aws-sdk/rds-signer as the password, over the same verified TLS.
const signer = new Signer({
  hostname: host,
  port,
  username: user,
  region: process.env.AWS_REGION,
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
});
const token = await signer.getAuthToken();
assert.ok(token.startsWith(`${host}:${port}/?`), token);
const iam = new pg.Client({ ...base, password: token });
await iam.connect();
const who = await iam.query({ name: "who", text: "SELECT current_user AS u" });
assert.equal(who.rows[0].u, user);
await iam.end();

// A token for another port (so signed for another host:port) is refused.
const other = await new Signer({
  hostname: host,
  port: port + 1,
  username: user,
  region: process.env.AWS_REGION,
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
}).getAuthToken();
const refused = new pg.Client({ ...base, password: other });
await assert.rejects(refused.connect(), (err) => err.code === "28P01" && /IAM authentication failed/.test(err.message));

// 4. Plaintext is refused: the proxy has RequireTLS.
const plain = new pg.Client({ ...base, ssl: false, password: process.env.PROXY_PASSWORD });
await assert.rejects(plain.connect(), (err) => err.code === "28000" && /requires TLS/.test(err.message));

await client.end();
console.log("ok");
