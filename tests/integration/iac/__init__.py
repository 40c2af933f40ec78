"""Infrastructure-as-code call sequences (Terraform AWS provider, CDK): STS, tags, subnet and parameter groups."""
