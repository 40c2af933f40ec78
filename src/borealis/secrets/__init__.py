"""Secrets Manager: secrets with versions and staging labels, encrypted at rest in the store."""

from borealis.secrets._manager import AWSCURRENT, AWSPENDING, AWSPREVIOUS, SecretsManager
from borealis.secrets._password import random_password

__all__ = ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS", "SecretsManager", "random_password"]
