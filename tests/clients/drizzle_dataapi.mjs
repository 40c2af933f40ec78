// Drizzle ORM's AWS Data API driver (drizzle-orm/aws-data-api/pg on @aws-sdk/client-rds-data) against Borealis.
// Drizzle numbers its parameters :1, :2, ... (issue 12). Run by tests/integration/dataapi/test_dataapi_clients.py
// with BOREALIS_URL, RESOURCE_ARN, SECRET_ARN and AWS credentials in the environment; exits non-zero on the
// first failed assertion.
import assert from "node:assert/strict";
import { RDSDataClient } from "@aws-sdk/client-rds-data";
import { drizzle } from "drizzle-orm/aws-data-api/pg";
import { boolean, integer, jsonb, pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";
import { and, asc, eq, gt, sql } from "drizzle-orm";

const client = new RDSDataClient({ endpoint: process.env.BOREALIS_URL, region: "us-east-1", maxAttempts: 1 });
const db = drizzle(client, {
  database: "postgres",
  resourceArn: process.env.RESOURCE_ARN,
  secretArn: process.env.SECRET_ARN,
});

const users = pgTable("drizzle_users", {
  id: serial("id").primaryKey(),
  name: text("name").notNull(),
  verified: boolean("verified").notNull().default(false),
  jsonb: jsonb("jsonb").$type(),
  balance: integer("balance").notNull().default(0),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

await db.execute(sql`drop table if exists ${users}`);
await db.execute(sql`
  create table ${users} (
    id serial primary key,
    name text not null,
    verified boolean not null default false,
    jsonb jsonb,
    balance integer not null default 0,
    created_at timestamptz not null default now()
  )
`);

// Inserts with returning: one row, several rows, typed values (jsonb goes with typeHint JSON).
const [john] = await db
  .insert(users)
  .values({ name: "John", jsonb: ["foo", "bar"], balance: 100 })
  .returning();
assert.equal(john.name, "John");
assert.equal(john.verified, false);
assert.deepEqual(john.jsonb, ["foo", "bar"]);
assert.ok(john.createdAt instanceof Date);
const many = await db
  .insert(users)
  .values([{ name: "Jane", balance: 50 }, { name: "Jack", verified: true }])
  .returning({ id: users.id, name: users.name, verified: users.verified });
assert.deepEqual(
  many.map((u) => [u.name, u.verified]),
  [["Jane", false], ["Jack", true]],
);

// Selects with where clauses (more numbered parameters), update/delete with returning.
const rich = await db
  .select({ name: users.name })
  .from(users)
  .where(and(gt(users.balance, 10), eq(users.verified, false)))
  .orderBy(asc(users.name));
assert.deepEqual(rich, [{ name: "Jane" }, { name: "John" }]);
const renamed = await db.update(users).set({ name: "Jacky" }).where(eq(users.name, "Jack")).returning({ name: users.name });
assert.deepEqual(renamed, [{ name: "Jacky" }]);

// A transaction that commits: money moves between two rows.
await db.transaction(async (tx) => {
  await tx.update(users).set({ balance: sql`${users.balance} - ${30}` }).where(eq(users.id, john.id));
  await tx.update(users).set({ balance: sql`${users.balance} + ${30}` }).where(eq(users.name, "Jane"));
});
let balances = await db.select({ name: users.name, balance: users.balance }).from(users).orderBy(asc(users.id));
assert.deepEqual(balances, [
  { name: "John", balance: 70 },
  { name: "Jane", balance: 80 },
  { name: "Jacky", balance: 0 },
]);

// A transaction that throws rolls back: Drizzle sends RollbackTransaction, nothing of it stays.
await assert.rejects(
  db.transaction(async (tx) => {
    await tx.insert(users).values({ name: "Ghost" });
    await tx.update(users).set({ balance: 0 }).where(eq(users.id, john.id));
    throw new Error("abort");
  }),
  /abort/,
);
// tx.rollback() in the callback rolls back too.
await assert.rejects(
  db.transaction(async (tx) => {
    await tx.insert(users).values({ name: "Ghost2" });
    tx.rollback();
  }),
);
balances = await db.select({ name: users.name, balance: users.balance }).from(users).orderBy(asc(users.id));
assert.deepEqual(balances.map((u) => u.name), ["John", "Jane", "Jacky"]);
assert.equal(balances[0].balance, 70);

// jsonb reads back compact, as the service returns it; Drizzle parses it.
const raw = await db.execute(sql`select ${users.jsonb}::text as t, ${users.jsonb} as j from ${users} where ${users.id} = ${john.id}`);
assert.equal(raw.rows[0].t, '["foo", "bar"]'); // text is PostgreSQL's own output
assert.equal(raw.rows[0].j, '["foo","bar"]');

await db.execute(sql`drop table ${users}`);
console.log("drizzle ok");
