// The npm data-api-client configured for the Borealis that the test environment names (shared by the scripts).
module.exports = require("data-api-client")({
  secretArn: process.env.SECRET_ARN,
  resourceArn: process.env.RESOURCE_ARN,
  database: "postgres",
  engine: "pg",
  options: {
    endpoint: process.env.BOREALIS_URL,
    region: "us-east-1",
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    maxRetries: 0,
  },
});
