// The AWS SDK for JavaScript v3 (@aws-sdk/client-sts, @aws-sdk/client-rds) against Borealis: the STS calls
// CDK makes (who am I, assume the deploy role) and RDS tags. Run by tests/integration/iac/ with BOREALIS_URL,
// ROLE_ARN and AWS credentials in the environment; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import { STSClient, GetCallerIdentityCommand, AssumeRoleCommand } from "@aws-sdk/client-sts";
import { RDSClient, DescribeGlobalClustersCommand } from "@aws-sdk/client-rds";

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
console.log("ok");
