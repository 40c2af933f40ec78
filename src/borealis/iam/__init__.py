"""Access keys: who may call the API. (IAM database auth tokens come with the proxy.)"""

from borealis.iam._keys import AccessKeys, write_credentials_file

__all__ = ["AccessKeys", "write_credentials_file"]
