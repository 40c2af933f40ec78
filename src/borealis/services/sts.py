"""AWS STS (query protocol): who is calling, and temporary credentials.

Every Terraform provider and CDK starts with GetCallerIdentity to learn the account; CDK and many CI setups
then assume a role. Borealis has no IAM policies: any role ARN of its account can be assumed by any caller,
and the temporary credentials act with the full rights every key has. What matters is that they work as
AWS's do: a key pair plus a session token that SigV4 requests must carry, expiring when STS said.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.iam import AccessKeys

__all__ = ["handlers"]

_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


def _validation(message: str) -> AWSError:
    return AWSError("ValidationError", message)


def _duration(p: dict[str, Any], default: int, low: int, high: int) -> int:
    seconds = p.get("DurationSeconds")
    if seconds is None:
        return default
    if not low <= seconds <= high:
        raise _validation(
            f"1 validation error detected: Value '{seconds}' at 'durationSeconds' failed to satisfy constraint: "
            f"Member must have value {'greater' if seconds < low else 'less'} than or equal to "
            f"{low if seconds < low else high}"
        )
    return int(seconds)


class _Sts:
    def __init__(self, keys: AccessKeys, account_id: str) -> None:
        self.keys = keys
        self.account = account_id

    def _credentials(self, identity: dict[str, str], seconds: int) -> dict[str, Any]:
        made = self.keys.create_temporary(identity, seconds)
        made["Expiration"] = dt.datetime.fromtimestamp(int(made["Expiration"]), dt.UTC)
        return made

    async def get_caller_identity(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        who = self.keys.identity(ctx.access_key, self.account)
        return {"UserId": who["user_id"], "Account": self.account, "Arn": who["arn"]}

    async def assume_role(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        arn, session = p["RoleArn"], p["RoleSessionName"]
        if not 20 <= len(arn) <= 2048:
            raise _validation(
                f"1 validation error detected: Value '{arn}' at 'roleArn' failed to satisfy constraint: "
                "Member must have length greater than or equal to 20"
            )
        if not _SESSION_NAME.match(session):
            raise _validation(
                f"1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            )
        match = _ROLE_ARN.match(arn)
        if match is None:
            raise _validation(f"{arn} is invalid")
        if match.group(1) != self.account:
            raise AWSError(
                "AccessDenied",
                f"User: {self.keys.identity(ctx.access_key, self.account)['arn']} is not authorized to perform: "
                f"sts:AssumeRole on resource: {arn}",
                403,
            )
        chained = self.keys.identity(ctx.access_key, self.account)["arn"].startswith("arn:aws:sts::")
        seconds = _duration(p, 3600, 900, 43200)
        if chained and seconds > 3600:
            raise _validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
            )
        role = match.group(2)
        # A role's id is stable per role name, AROA + 17 characters, as AWS shows it.
        role_id = "AROA" + "".join(c for c in role.upper() if c.isalnum()).ljust(17, "X")[:17]
        assumed = f"arn:aws:sts::{self.account}:assumed-role/{role}/{session}"
        user_id = f"{role_id}:{session}"
        out: dict[str, Any] = {
            "Credentials": self._credentials({"arn": assumed, "user_id": user_id}, seconds),
            "AssumedRoleUser": {"AssumedRoleId": user_id, "Arn": assumed},
        }
        if p.get("Policy") or p.get("PolicyArns"):
            out["PackedPolicySize"] = 0  # no policies are enforced: a session policy takes no room
        return out

    async def get_session_token(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if self.keys.token_for(ctx.access_key) is not None:
            raise AWSError("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
        seconds = _duration(p, 43200, 900, 129600)
        return {"Credentials": self._credentials(self.keys.identity(ctx.access_key, self.account), seconds)}


def handlers(keys: AccessKeys, account_id: str) -> dict[str, Handler]:
    """The STS operations Borealis serves, by operation name."""
    sts = _Sts(keys, account_id)
    return {
        "GetCallerIdentity": sts.get_caller_identity,
        "AssumeRole": sts.assume_role,
        "GetSessionToken": sts.get_session_token,
    }
