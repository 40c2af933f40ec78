"""GetRandomPassword: a password from the OS's CSPRNG, with the character classes AWS documents."""

from __future__ import annotations

import secrets
import string

from borealis.aws import AWSError

__all__ = ["random_password"]

# The punctuation AWS draws from: every printable ASCII symbol, as in Python's string.punctuation.
_CLASSES = {
    "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase,
    "digits": string.digits,
    "punctuation": string.punctuation,
}


def random_password(
    *,
    password_length: int = 32,
    exclude_characters: str = "",
    exclude_numbers: bool = False,
    exclude_punctuation: bool = False,
    exclude_uppercase: bool = False,
    exclude_lowercase: bool = False,
    include_space: bool = False,
    require_each_included_type: bool = True,
) -> str:
    """A random password of ``password_length`` characters (1-4096), defaults as in AWS.

    Raises AWSError("InvalidParameterException") when the length is out of range or the exclusions
    leave too few characters to draw from.
    """
    if not 1 <= password_length <= 4096:
        raise AWSError("InvalidParameterException", "PasswordLength must be between 1 and 4096 characters.")
    excluded = set(exclude_characters)
    wanted = {
        "lower": not exclude_lowercase,
        "upper": not exclude_uppercase,
        "digits": not exclude_numbers,
        "punctuation": not exclude_punctuation,
    }
    pools = ["".join(c for c in chars if c not in excluded) for name, chars in _CLASSES.items() if wanted[name]]
    if include_space and " " not in excluded:
        pools.append(" ")
    pools = [p for p in pools if p]
    if not pools:
        raise AWSError("InvalidParameterException", "The password cannot be generated: every character is excluded.")
    if require_each_included_type and password_length < len(pools):
        raise AWSError(
            "InvalidParameterException",
            "The password length is too short to include a character of each required type.",
        )
    alphabet = "".join(pools)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(password_length))
        # Rejection sampling keeps the distribution uniform over the passwords that satisfy the rule.
        if not require_each_included_type or all(any(c in p for c in password) for p in pools):
            return password
