"""Access keys (who may call the API) and IAM database authentication tokens (who may log in to a database)."""

from borealis.iam._dbauth import TokenError, looks_like_token, verify_token
from borealis.iam._keys import AccessKeys, write_credentials_file

__all__ = ["AccessKeys", "TokenError", "looks_like_token", "verify_token", "write_credentials_file"]
