// Prisma 7's client with @prisma/adapter-pg (node-postgres) through a Borealis RDS Proxy endpoint over TLS.
// Run by tests/integration/proxy/test_prisma.py after `prisma generate` (prisma/schema.prisma, output in
// .prisma-client), with PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD and PROXY_CA in the environment;
// exits non-zero on the first failed assertion and prints "ok" at the end.
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import pg from "pg";
import { PrismaPg } from "@prisma/adapter-pg";

const require = createRequire(import.meta.url);
const { PrismaClient, Prisma } = require("./.prisma-client");

const ssl = { ca: fs.readFileSync(process.env.PROXY_CA, "utf8"), rejectUnauthorized: true };
const base = {
  host: process.env.PROXY_HOST,
  port: Number(process.env.PROXY_PORT),
  user: process.env.PROXY_USER,
  password: process.env.PROXY_PASSWORD,
  ssl,
};

// The schema's tables, made by the SQL `prisma migrate diff --from-empty` writes for prisma/schema.prisma.
const admin = new pg.Client({ ...base, database: "postgres" });
await admin.connect();
assert.equal(admin.connection.stream.encrypted, true);
await admin.query("DROP DATABASE IF EXISTS prisma_test");
await admin.query("CREATE DATABASE prisma_test");
await admin.end();
const ddl = new pg.Client({ ...base, database: "prisma_test" });
await ddl.connect();
await ddl.query(`
  CREATE TABLE "User" (
    "id" SERIAL NOT NULL, "email" TEXT NOT NULL, "name" TEXT,
    "balance" DECIMAL(12,2) NOT NULL DEFAULT 0, "visits" BIGINT NOT NULL DEFAULT 0, "profile" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
  CREATE TABLE "Post" (
    "id" SERIAL NOT NULL, "title" TEXT NOT NULL, "content" TEXT, "published" BOOLEAN NOT NULL DEFAULT false,
    "authorId" INTEGER NOT NULL,
    CONSTRAINT "Post_pkey" PRIMARY KEY ("id"));
  CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
  ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id")
    ON DELETE RESTRICT ON UPDATE CASCADE;
`);
await ddl.end();

const adapter = new PrismaPg({ ...base, database: "prisma_test", max: 4 });
const prisma = new PrismaClient({ adapter });

// 1. Nested create and include, with Decimal, BigInt, Json and DateTime round trips.
const alice = await prisma.user.create({
  data: {
    email: "alice@example.com",
    name: "Alice",
    balance: new Prisma.Decimal("100.50"),
    visits: 9007199254740993n, // past 2^53: only a BigInt keeps it
    profile: { langs: ["sql", "ts"], admin: true },
    posts: { create: [{ title: "Hello", published: true }, { title: "Draft" }] },
  },
  include: { posts: { orderBy: { id: "asc" } } },
});
assert.equal(alice.posts.length, 2);
assert.deepEqual(
  alice.posts.map((p) => [p.title, p.published]),
  [["Hello", true], ["Draft", false]],
);
assert.equal(alice.balance.toString(), "100.5");
assert.equal(alice.visits, 9007199254740993n);
assert.deepEqual(alice.profile, { langs: ["sql", "ts"], admin: true });
assert.ok(alice.createdAt instanceof Date);
const bob = await prisma.user.create({ data: { email: "bob@example.com", name: "Bob" } });

// 2. Queries: unique lookup, filters, relation filters, count, aggregate, update, updateMany.
assert.equal((await prisma.user.findUnique({ where: { email: "bob@example.com" } })).id, bob.id);
const withPublished = await prisma.user.findMany({ where: { posts: { some: { published: true } } } });
assert.deepEqual(
  withPublished.map((u) => u.email),
  ["alice@example.com"],
);
assert.equal(await prisma.post.count({ where: { author: { email: "alice@example.com" } } }), 2);
const sum = await prisma.user.aggregate({ _sum: { balance: true } });
assert.equal(sum._sum.balance.toString(), "100.5");
await prisma.user.update({ where: { id: bob.id }, data: { visits: { increment: 5 } } });
assert.equal((await prisma.post.updateMany({ where: { published: false }, data: { published: true } })).count, 1);

// 3. A unique violation is Prisma's P2002, naming the field.
await assert.rejects(
  prisma.user.create({ data: { email: "alice@example.com" } }),
  (e) => e instanceof Prisma.PrismaClientKnownRequestError && e.code === "P2002",
);

// 4. Interactive transactions: one commits, one that throws rolls back (on its one server connection,
//    which the proxy keeps for the transaction).
await prisma.$transaction(async (tx) => {
  await tx.user.update({ where: { id: alice.id }, data: { balance: { decrement: 30 } } });
  await tx.user.update({ where: { id: bob.id }, data: { balance: { increment: 30 } } });
});
await assert.rejects(
  prisma.$transaction(async (tx) => {
    await tx.user.update({ where: { id: alice.id }, data: { balance: { decrement: 1000 } } });
    const after = await tx.user.findUnique({ where: { id: alice.id } });
    if (after.balance.isNegative()) throw new Error("insufficient funds");
  }),
  /insufficient funds/,
);
const balances = await prisma.user.findMany({ orderBy: { id: "asc" }, select: { balance: true } });
assert.deepEqual(
  balances.map((u) => u.balance.toString()),
  ["70.5", "30"],
);

// 5. A batch transaction and raw SQL with parameters.
const [posts, users] = await prisma.$transaction([prisma.post.count(), prisma.user.count()]);
assert.deepEqual([posts, users], [2, 2]);
const min = 50;
const rich = await prisma.$queryRaw`SELECT email FROM "User" WHERE balance > ${min} ORDER BY email`;
assert.deepEqual(rich, [{ email: "alice@example.com" }]);
assert.equal(await prisma.$executeRaw`UPDATE "Post" SET content = ${"body"} WHERE "authorId" = ${alice.id}`, 2);

// 6. Many concurrent queries over the adapter's pool of 4, through the proxy's pool.
const counts = await Promise.all(
  Array.from({ length: 40 }, (_, i) =>
    prisma.post.count({ where: { content: "body", id: { gt: i % 2 } } }),
  ),
);
assert.deepEqual(new Set(counts), new Set([2, 1]));

await prisma.post.deleteMany({});
await prisma.user.deleteMany({});
assert.equal(await prisma.user.count(), 0);
await prisma.$disconnect();
console.log("ok");
