// The AWS SDK for JavaScript v3 (@aws-sdk/client-sts, @aws-sdk/client-rds) against Borealis: the STS calls
// CDK makes (who am I, assume the deploy role) and RDS tags. Run by tests/integration/iac/ with BOREALIS_URL,
// ROLE_ARN and AWS credentials in the environment; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import { STSClient, GetCallerIdentityCommand, AssumeRoleCommand } from "@aws-sdk/client-sts";
import {
  RDSClient,
  DescribeGlobalClustersCommand,
  DescribeDBClustersCommand,
  AddTagsToResourceCommand,
  ListTagsForResourceCommand,
  RemoveTagsFromResourceCommand,
} from "@aws-sdk/client-rds";

const config = { endpoint: process.env.BOREALIS_URL, region: "us-east-1", maxAttempts: 1 };
const sts = new STSClient(config);

const me = await sts.send(new GetCallerIdentityCommand({}));
assert.equal(me.Account, "000000000000");
assert.match(me.Arn, /^arn:aws:iam::000000000000:user\/admin$/);

const assumed = await sts.send(new AssumeRoleCommand({ RoleArn: process.env.ROLE_ARN, RoleSessionName: "cdk-js" }));
assert.ok(assumed.Credentials.Expiration instanceof Date);
assert.ok(assumed.Credentials.Expiration.getTime() > Date.now());
const credentials = {
  accessKeyId: assumed.Credentials.AccessKeyId,
  secretAccessKey: assumed.Credentials.SecretAccessKey,
  sessionToken: assumed.Credentials.SessionToken,
};
const asRole = await new STSClient({ ...config, credentials }).send(new GetCallerIdentityCommand({}));
assert.equal(asRole.Arn, assumed.AssumedRoleUser.Arn);

const rds = new RDSClient({ ...config, credentials });
const globals = await rds.send(new DescribeGlobalClustersCommand({}));
assert.deepEqual(globals.GlobalClusters, []);

// Tags on the default cluster, with the role's credentials: add, list, remove, and TagList in the Describe.
const [cluster] = (await rds.send(new DescribeDBClustersCommand({ DBClusterIdentifier: "default" }))).DBClusters;
const arn = cluster.DBClusterArn;
await rds.send(new AddTagsToResourceCommand({ ResourceName: arn, Tags: [{ Key: "js-sdk", Value: "v3" }] }));
let tags = (await rds.send(new ListTagsForResourceCommand({ ResourceName: arn }))).TagList;
assert.ok(tags.some((t) => t.Key === "js-sdk" && t.Value === "v3"));
const [again] = (await rds.send(new DescribeDBClustersCommand({ DBClusterIdentifier: "default" }))).DBClusters;
assert.ok(again.TagList.some((t) => t.Key === "js-sdk"));
await rds.send(new RemoveTagsFromResourceCommand({ ResourceName: arn, TagKeys: ["js-sdk"] }));
tags = (await rds.send(new ListTagsForResourceCommand({ ResourceName: arn }))).TagList;
assert.ok(!tags.some((t) => t.Key === "js-sdk"));
await assert.rejects(
  rds.send(new ListTagsForResourceCommand({ ResourceName: "arn:aws:rds:us-east-1:000000000000:cluster:nope" })),
  (err) => err.name === "DBClusterNotFoundFault",
);
console.log("ok");
