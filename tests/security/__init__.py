"""The security tier: each defect of issue 11 as a test with a real client, and the fuzzers (docs/security.md)."""
