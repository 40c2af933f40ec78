"""Resource policies of secrets: checked as Secrets Manager checks them, stored, not enforced.

Borealis has no IAM: every signed caller may do everything, so a policy changes nothing about who can
read a secret. It is still validated and kept, because infrastructure code (Terraform's
aws_secretsmanager_secret_policy, CDK's ``addToResourcePolicy``) writes and reads it back:

- the document must be JSON with ``Version`` and ``Statement`` (MalformedPolicyDocumentException);
- ValidateResourcePolicy reports structural problems (Effect, Action, Principal, Resource) as findings;
- with BlockPublicPolicy (the default), a statement that allows any principal without a condition is
  refused (PublicPolicyException), as Secrets Manager refuses broad access.
"""

from __future__ import annotations

import json
from typing import Any

from borealis.aws import AWSError

__all__ = ["MAX_POLICY", "findings", "parse_policy", "public"]

MAX_POLICY = 20480
_VERSIONS = ("2012-10-17", "2008-10-17")


def _malformed(message: str) -> AWSError:
    return AWSError("MalformedPolicyDocumentException", message)


def parse_policy(text: str) -> dict[str, Any]:
    """The policy document, or MalformedPolicyDocumentException when it is no policy at all."""
    if len(text) > MAX_POLICY:
        raise AWSError("LimitExceededException", f"The resource policy is longer than {MAX_POLICY} characters.")
    try:
        doc = json.loads(text)
    except ValueError:
        raise _malformed("This resource policy contains a syntax error: it is not valid JSON.") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise _malformed("This resource policy contains an unsupported or missing Statement element.")
    return doc


def _statements(doc: dict[str, Any]) -> list[Any]:
    statements = doc["Statement"]
    return statements if isinstance(statements, list) else [statements]


def findings(doc: dict[str, Any]) -> list[dict[str, str]]:
    """What ValidateResourcePolicy reports about a parsed policy (empty: it passes)."""
    out: list[dict[str, str]] = []

    def finding(check: str, message: str) -> None:
        out.append({"CheckName": check, "ErrorMessage": message})

    if doc.get("Version") not in _VERSIONS:
        finding("SYNTAX_CHECK", f"Version must be one of {', '.join(_VERSIONS)}.")
    for i, statement in enumerate(_statements(doc), 1):
        if not isinstance(statement, dict):
            finding("SYNTAX_CHECK", f"Statement {i} is not an object.")
            continue
        if statement.get("Effect") not in ("Allow", "Deny"):
            finding("SYNTAX_CHECK", f"Statement {i}: Effect must be Allow or Deny.")
        if ("Action" in statement) == ("NotAction" in statement):
            finding("SYNTAX_CHECK", f"Statement {i} must have exactly one of Action and NotAction.")
        if ("Principal" in statement) == ("NotPrincipal" in statement):
            finding("SYNTAX_CHECK", f"Statement {i} of a resource policy must name a Principal.")
        actions = statement.get("Action", statement.get("NotAction", []))
        for action in actions if isinstance(actions, list) else [actions]:
            if not isinstance(action, str) or not (action == "*" or action.lower().startswith("secretsmanager:")):
                finding("SYNTAX_CHECK", f"Statement {i}: {action!r} is not a Secrets Manager action.")
    return out


def public(doc: dict[str, Any]) -> bool:
    """Whether a statement allows any principal with no condition (what BlockPublicPolicy refuses)."""
    for statement in _statements(doc):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow" or statement.get("Condition"):
            continue
        principal = statement.get("Principal")
        if principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))):
            return True
    return False


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
