"""The Secrets Manager domain: secrets, their versions and staging labels, deletion windows.

One stored document per secret, keyed by its ARN, in the store table ``secrets``:

    {"arn", "name", "description", "kms_key_id", "tags": [{"Key", "Value"}], "owning_service",
     "created", "changed", "accessed", "deleted",            # epoch seconds; accessed/deleted may be None
     "versions": {version_id: {"created", "accessed", "stages": [...], "kind": "string" | "binary",
                               "value": <Fernet token>}}}

Rules (from the Secrets Manager API reference):
- A value written without stages gets AWSCURRENT; the version that loses AWSCURRENT gets AWSPREVIOUS.
  The first version of a secret always gets AWSCURRENT. A label is on at most one version.
- ClientRequestToken is the VersionId. Repeating a token with the same value changes nothing; with a
  different value it is ResourceExistsException, since versions are immutable.
- DeleteSecret schedules deletion after a recovery window (7-30 days, default 30); until then the secret
  can be described, listed with IncludePlannedDeletion and restored, but not read or changed, and its
  name stays taken. ForceDeleteWithoutRecovery deletes at once. Due deletions are purged lazily.
- A secret with an owning service (RDS's ``rds!cluster-...``) can be changed or deleted only by that
  service, through this class, never through the public API.
- Rotation: a secret managed by RDS rotates every 7 days by default (RotateSecret changes the schedule or
  rotates at once, through the owning service); Borealis runs no Lambda functions, so other secrets cannot
  be given a rotation. A new AWSCURRENT value counts as a rotation (LastRotatedDate, NextRotationDate).
- A resource policy is validated and kept (:mod:`borealis.secrets._policies`), never enforced: there is no IAM.

The whole table is mirrored in memory (it is small, and this process is its only writer), so reads never
touch the disk; every write goes to the store first and then replaces the mirror's copy.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import secrets as _random
import string
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from borealis.aws import AWSError
from borealis.secrets._crypto import Cipher, InvalidToken
from borealis.secrets._policies import findings, parse_policy, public
from borealis.secrets._search import FILTER_KEYS, matches
from borealis.store import Store

__all__ = ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS", "SecretsManager"]

AWSCURRENT = "AWSCURRENT"
AWSPREVIOUS = "AWSPREVIOUS"
AWSPENDING = "AWSPENDING"

Doc = dict[str, Any]

_TABLE = "secrets"
_DAY = 86400.0
_MAX_VALUE_BYTES = 65536
# AWS keeps about 100 versions; older versions without a label are removed first.
_MAX_VERSIONS = 100
_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
# Names made by other services (rds!cluster-<uuid>) may also contain "!".
_SERVICE_NAME = re.compile(r"[A-Za-z0-9/_+=.@!-]{1,512}")
_FILTER_VALUE = re.compile(r"!?[a-zA-Z0-9 :_@/+=.\-!]{0,512}")
_SUFFIX_ALPHABET = string.ascii_letters + string.digits
_OWNING_SERVICE_TAG = "aws:secretsmanager:owningService"
_SORT_KEYS: dict[str, Callable[[Doc], Any]] = {
    "created-date": lambda d: d["created"],
    "last-changed-date": lambda d: d["changed"],
    "last-accessed-date": lambda d: d["accessed"] or 0.0,
    "name": lambda d: d["name"],
}

_MANAGED_ROTATION_DAYS = 7  # what RDS gives the master user secrets it manages
_RATE = re.compile(r"^rate\((\d+) (hours?|days?)\)$")
_MSG_NOT_FOUND = "Secrets Manager can't find the specified secret."
_MSG_MARKED = "You can't perform this operation on the secret because it was marked for deletion."


def _not_found() -> AWSError:
    return AWSError("ResourceNotFoundException", _MSG_NOT_FOUND)


def _invalid_parameter(message: str) -> AWSError:
    return AWSError("InvalidParameterException", message)


def _invalid_request(message: str) -> AWSError:
    return AWSError("InvalidRequestException", message)


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class SecretsManager:
    """Secrets Manager for one account and region, persisted in ``store`` and encrypted with ``key_file``.

    Methods take the operation's parameters as snake_case keywords and return dicts shaped like the
    operation's output in botocore's model (timestamps as aware datetimes, SecretBinary as bytes).
    Failures raise :class:`borealis.aws.AWSError` with the code AWS uses. Callers that own a secret (the
    RDS control plane) pass ``owning_service``. Use from one thread (the event loop), like the store.
    """

    def __init__(
        self,
        store: Store,
        key_file: Path,
        *,
        account_id: str,
        region: str,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        """``read_only``: a reader beside the process that owns the secrets (a Data API worker), which must
        not write: it neither purges secrets whose deletion is due nor records access dates."""
        self.account_id = account_id
        self._read_only = read_only
        self.region = region
        self._table = store.table(_TABLE)
        self._cipher = Cipher(key_file)
        self._clock = clock
        self._arn_prefix = f"arn:aws:secretsmanager:{region}:{account_id}:secret:"
        self._docs: dict[str, Doc] = {}
        self._by_name: dict[str, str] = {}
        for arn, doc in self._table.items():
            self._docs[arn] = doc
            self._by_name[doc["name"]] = arn
        # secret_json's parsed AWSCURRENT values by the id the caller used; cleared on every write.
        self._json: dict[str, dict[str, Any]] = {}
        self._next_purge = self._earliest_deletion()

    # ---- operations -----------------------------------------------------------------------------

    def create_secret(
        self,
        name: str,
        *,
        secret_string: str | None = None,
        secret_binary: bytes | None = None,
        description: str | None = None,
        tags: list[dict[str, str]] | None = None,
        client_request_token: str | None = None,
        kms_key_id: str | None = None,
        owning_service: str | None = None,
    ) -> dict[str, Any]:
        """CreateSecret: a new secret, with a first version (AWSCURRENT) when a value is given.

        Returns ``{"ARN", "Name"}`` plus ``"VersionId"`` when a version was created.
        """
        pattern = _NAME if owning_service is None else _SERVICE_NAME
        if not pattern.fullmatch(name):
            raise _invalid_parameter(
                "Invalid name. Must be a valid name containing alphanumeric characters, "
                "or any of the following: -/_+=.@!"
            )
        value = _value(secret_string, secret_binary, required=False)
        _check_description(description)
        new_tags = _merge_tags([], tags or [], reserved_ok=owning_service is not None)
        if owning_service is not None:
            new_tags = _merge_tags(new_tags, [{"Key": _OWNING_SERVICE_TAG, "Value": owning_service}], reserved_ok=True)
        version_id = _version_id(client_request_token)
        existing = self._find(name)
        if existing is not None:
            if existing["deleted"] is not None:
                raise _invalid_request(
                    "You can't create this secret because a secret with this name is already scheduled for deletion."
                )
            # A retried CreateSecret (same token, same value) succeeds without doing anything.
            if value is not None and client_request_token is not None:
                old = existing["versions"].get(client_request_token)
                if old is not None and self._same_value(old, value):
                    return {"ARN": existing["arn"], "Name": name, "VersionId": client_request_token}
            raise AWSError("ResourceExistsException", f"The operation failed because the secret {name} already exists.")
        now = self._clock()
        arn = self._arn_prefix + name + "-" + "".join(_random.choice(_SUFFIX_ALPHABET) for _ in range(6))
        doc: Doc = {
            "arn": arn,
            "name": name,
            "description": description,
            "kms_key_id": kms_key_id or None,
            "tags": new_tags,
            "owning_service": owning_service,
            "created": now,
            "changed": now,
            "accessed": None,
            "deleted": None,
            "versions": {},
        }
        if owning_service == "rds":
            doc["rotation"] = _rotation({"AutomaticallyAfterDays": _MANAGED_ROTATION_DAYS}, None, now)
        out: dict[str, Any] = {"ARN": arn, "Name": name}
        if value is not None:
            self._add_version(doc, version_id, value, None, now)
            out["VersionId"] = version_id
        self._save(doc)
        return out

    def get_secret_value(
        self, secret_id: str, version_id: str | None = None, version_stage: str | None = None
    ) -> dict[str, Any]:
        """GetSecretValue: one version's value, AWSCURRENT unless a VersionId or VersionStage is given."""
        doc = self._live(secret_id)
        vid = _select_version(doc, version_id, version_stage)
        version = doc["versions"][vid]
        plaintext = self._decrypt(version)
        self._touch(doc, vid)
        out: dict[str, Any] = {
            "ARN": doc["arn"],
            "Name": doc["name"],
            "VersionId": vid,
            "VersionStages": list(version["stages"]),
            "CreatedDate": _when(version["created"]),
        }
        if version["kind"] == "string":
            out["SecretString"] = plaintext.decode("utf-8")
        else:
            out["SecretBinary"] = plaintext
        return out

    def put_secret_value(
        self,
        secret_id: str,
        *,
        client_request_token: str | None = None,
        secret_string: str | None = None,
        secret_binary: bytes | None = None,
        version_stages: Sequence[str] | None = None,
        owning_service: str | None = None,
    ) -> dict[str, Any]:
        """PutSecretValue: a new version, labelled ``version_stages`` (default AWSCURRENT)."""
        doc = copy.deepcopy(self._live(secret_id))
        _check_owner(doc, owning_service)
        value = _value(secret_string, secret_binary, required=True)
        assert value is not None
        if version_stages is not None:
            _check_stages(version_stages)
        vid = _version_id(client_request_token)
        now = self._clock()
        if self._add_version(doc, vid, value, version_stages, now):
            doc["changed"] = now
            if AWSCURRENT in doc["versions"][vid]["stages"] and doc.get("rotation"):
                _rotated(doc["rotation"], now)
            self._save(doc)
        return {
            "ARN": doc["arn"],
            "Name": doc["name"],
            "VersionId": vid,
            "VersionStages": list(doc["versions"][vid]["stages"]),
        }

    def update_secret(
        self,
        secret_id: str,
        *,
        client_request_token: str | None = None,
        description: str | None = None,
        kms_key_id: str | None = None,
        secret_string: str | None = None,
        secret_binary: bytes | None = None,
        owning_service: str | None = None,
    ) -> dict[str, Any]:
        """UpdateSecret: change metadata and, when a value is given, add a new AWSCURRENT version."""
        doc = copy.deepcopy(self._live(secret_id))
        value = _value(secret_string, secret_binary, required=False)
        _check_description(description)
        if value is not None or kms_key_id is not None:
            _check_owner(doc, owning_service)
        now = self._clock()
        out: dict[str, Any] = {"ARN": doc["arn"], "Name": doc["name"]}
        if description is not None:
            doc["description"] = description
        if kms_key_id is not None:
            # An empty KmsKeyId means the default key, which AWS then leaves out of DescribeSecret.
            doc["kms_key_id"] = kms_key_id or None
        if value is not None:
            vid = _version_id(client_request_token)
            self._add_version(doc, vid, value, None, now)
            out["VersionId"] = vid
        doc["changed"] = now
        self._save(doc)
        return out

    def describe_secret(self, secret_id: str) -> dict[str, Any]:
        """DescribeSecret: metadata, also of a secret scheduled for deletion (with DeletedDate)."""
        doc = self._get(secret_id)
        out = self._entry(doc)
        out["VersionIdsToStages"] = out.pop("SecretVersionsToStages")
        return out

    def list_secrets(
        self,
        *,
        include_planned_deletion: bool = False,
        max_results: int | None = None,
        next_token: str | None = None,
        filters: Sequence[dict[str, Any]] | None = None,
        sort_order: str | None = None,
        sort_by: str | None = None,
    ) -> dict[str, Any]:
        """ListSecrets: filtered, sorted (oldest first by default) and paginated secret metadata."""
        filters = list(filters or [])
        if len(filters) > 10:
            raise _invalid_parameter("You can specify at most 10 filters.")
        for f in filters:
            key = f.get("Key")
            values = f.get("Values") or []
            if key not in FILTER_KEYS:
                raise _invalid_parameter(f"Invalid filter key: {key}.")
            if not 1 <= len(values) <= 10 or not all(_FILTER_VALUE.fullmatch(v) for v in values):
                raise _invalid_parameter(f"Invalid filter values for key {key}.")
        limit = 100 if max_results is None else max_results
        if not 1 <= limit <= 100:
            raise _invalid_parameter("MaxResults must be between 1 and 100.")
        sort_key = _SORT_KEYS.get(sort_by or "created-date")
        if sort_key is None or (sort_order or "asc") not in ("asc", "desc"):
            raise _invalid_parameter("Invalid SortBy or SortOrder.")
        self._purge_due()
        docs = [
            d for d in self._docs.values() if (include_planned_deletion or d["deleted"] is None) and matches(filters, d)
        ]
        docs.sort(key=lambda d: (sort_key(d), d["arn"]), reverse=sort_order == "desc")
        start = 0 if next_token is None else _decode_token(next_token)
        page = docs[start : start + limit]
        out: dict[str, Any] = {"SecretList": [self._entry(d) for d in page]}
        if start + limit < len(docs):
            out["NextToken"] = _encode_token(start + limit)
        return out

    def delete_secret(
        self,
        secret_id: str,
        recovery_window_in_days: int | None = None,
        force_delete_without_recovery: bool = False,
        *,
        owning_service: str | None = None,
    ) -> dict[str, Any]:
        """DeleteSecret: schedule deletion after the recovery window, or delete now when forced."""
        if recovery_window_in_days is not None and not 7 <= recovery_window_in_days <= 30:
            raise _invalid_parameter("The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
        if recovery_window_in_days is not None and force_delete_without_recovery:
            raise _invalid_parameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
            )
        now = self._clock()
        found = self._find(secret_id)
        if found is None:
            if not force_delete_without_recovery:
                raise _not_found()
            # AWS documents that a forced delete of a missing secret does not fail.
            name = secret_id.removeprefix(self._arn_prefix)
            arn = secret_id if secret_id.startswith(self._arn_prefix) else self._arn_prefix + secret_id
            return {"ARN": arn, "Name": name, "DeletionDate": _when(now)}
        _check_owner(found, owning_service)
        if force_delete_without_recovery:
            self._purge(found)
            return {"ARN": found["arn"], "Name": found["name"], "DeletionDate": _when(now)}
        if found["deleted"] is not None:
            raise _invalid_request("You tried to perform the operation on a secret that's currently marked deleted.")
        doc = copy.deepcopy(found)
        doc["deleted"] = now + (30 if recovery_window_in_days is None else recovery_window_in_days) * _DAY
        doc["changed"] = now
        self._save(doc)
        return {"ARN": doc["arn"], "Name": doc["name"], "DeletionDate": _when(doc["deleted"])}

    def restore_secret(self, secret_id: str) -> dict[str, Any]:
        """RestoreSecret: cancel a scheduled deletion (a no-op on a secret that is not scheduled)."""
        doc = copy.deepcopy(self._get(secret_id))
        if doc["deleted"] is not None:
            doc["deleted"] = None
            doc["changed"] = self._clock()
            self._save(doc)
        return {"ARN": doc["arn"], "Name": doc["name"]}

    def tag_resource(self, secret_id: str, tags: list[dict[str, str]]) -> dict[str, Any]:
        """TagResource: add tags, replacing the value of keys already present."""
        doc = copy.deepcopy(self._live(secret_id))
        doc["tags"] = _merge_tags(doc["tags"], tags, reserved_ok=False)
        doc["changed"] = self._clock()
        self._save(doc)
        return {}

    def untag_resource(self, secret_id: str, tag_keys: list[str]) -> dict[str, Any]:
        """UntagResource: remove the tags with these keys (missing keys are ignored)."""
        doc = copy.deepcopy(self._live(secret_id))
        if any(k.startswith("aws:") for k in tag_keys):
            raise _invalid_parameter("Tag keys that start with aws: are reserved and can't be removed.")
        doc["tags"] = [t for t in doc["tags"] if t["Key"] not in set(tag_keys)]
        doc["changed"] = self._clock()
        self._save(doc)
        return {}

    def update_secret_version_stage(
        self,
        secret_id: str,
        version_stage: str,
        *,
        remove_from_version_id: str | None = None,
        move_to_version_id: str | None = None,
        owning_service: str | None = None,
    ) -> dict[str, Any]:
        """UpdateSecretVersionStage: move a staging label between versions, or remove it."""
        doc = copy.deepcopy(self._live(secret_id))
        _check_owner(doc, owning_service)
        _check_stages([version_stage])
        versions = doc["versions"]
        for vid in (remove_from_version_id, move_to_version_id):
            if vid is not None and vid not in versions:
                raise _invalid_parameter(f"Secrets Manager can't find the specified version: {vid}.")
        holder = _holder(doc, version_stage)
        if holder is not None and holder != move_to_version_id and holder != remove_from_version_id:
            raise _invalid_parameter(
                f"The staging label {version_stage} is currently attached to version {holder}, so you "
                "must explicitly reference that version in RemoveFromVersionId."
            )
        if remove_from_version_id is not None and holder != remove_from_version_id:
            raise _invalid_parameter(
                f"The staging label {version_stage} is not attached to version {remove_from_version_id}."
            )
        if move_to_version_id is None:
            if version_stage == AWSCURRENT:
                raise _invalid_parameter(
                    "You can't remove the staging label AWSCURRENT; move it to another version instead."
                )
            if remove_from_version_id is not None:
                versions[remove_from_version_id]["stages"].remove(version_stage)
        elif holder != move_to_version_id:
            _move_stage(doc, version_stage, move_to_version_id)
        doc["changed"] = self._clock()
        self._save(doc)
        return {"ARN": doc["arn"], "Name": doc["name"]}

    def list_secret_version_ids(
        self,
        secret_id: str,
        *,
        max_results: int | None = None,
        next_token: str | None = None,
        include_deprecated: bool = False,
    ) -> dict[str, Any]:
        """ListSecretVersionIds: the versions, newest first; those without labels only when asked."""
        doc = self._get(secret_id)
        limit = 100 if max_results is None else max_results
        if not 1 <= limit <= 100:
            raise _invalid_parameter("MaxResults must be between 1 and 100.")
        items = sorted(doc["versions"].items(), key=lambda kv: kv[1]["created"], reverse=True)
        if not include_deprecated:
            items = [(vid, v) for vid, v in items if v["stages"]]
        start = 0 if next_token is None else _decode_token(next_token)
        page = items[start : start + limit]
        entries = []
        for vid, v in page:
            entry: dict[str, Any] = {
                "VersionId": vid,
                "VersionStages": list(v["stages"]),
                "CreatedDate": _when(v["created"]),
            }
            if v.get("accessed") is not None:
                entry["LastAccessedDate"] = _when(v["accessed"])
            if doc["kms_key_id"]:
                entry["KmsKeyIds"] = [doc["kms_key_id"]]
            entries.append(entry)
        out: dict[str, Any] = {"Versions": entries, "ARN": doc["arn"], "Name": doc["name"]}
        if start + limit < len(items):
            out["NextToken"] = _encode_token(start + limit)
        return out

    def put_resource_policy(self, secret_id: str, policy: str, *, block_public: bool = True) -> dict[str, Any]:
        """PutResourcePolicy: validated (and refused if public, unless allowed), then kept as given."""
        doc = copy.deepcopy(self._live(secret_id))
        parsed = parse_policy(policy)
        problems = findings(parsed)
        if problems:
            raise AWSError("MalformedPolicyDocumentException", problems[0]["ErrorMessage"])
        if block_public and public(parsed):
            raise AWSError(
                "PublicPolicyException",
                "The BlockPublicPolicy parameter is set to true, and the resource policy did not prevent broad "
                "access to the secret.",
            )
        doc["policy"] = policy
        self._save(doc)
        return {"ARN": doc["arn"], "Name": doc["name"]}

    def get_resource_policy(self, secret_id: str) -> dict[str, Any]:
        """GetResourcePolicy: the policy as it was put (no ResourcePolicy member when there is none)."""
        doc = self._get(secret_id)
        out: dict[str, Any] = {"ARN": doc["arn"], "Name": doc["name"]}
        if doc.get("policy"):
            out["ResourcePolicy"] = doc["policy"]
        return out

    def delete_resource_policy(self, secret_id: str) -> dict[str, Any]:
        """DeleteResourcePolicy (idempotent)."""
        doc = copy.deepcopy(self._live(secret_id))
        if doc.get("policy"):
            doc["policy"] = None
            self._save(doc)
        return {"ARN": doc["arn"], "Name": doc["name"]}

    def validate_resource_policy(self, secret_id: str | None, policy: str) -> dict[str, Any]:
        """ValidateResourcePolicy: the findings for a policy (and the secret, if one is named, must exist)."""
        if secret_id is not None:
            self._get(secret_id)
        problems = findings(parse_policy(policy))
        return {"PolicyValidationPassed": not problems, "ValidationErrors": problems}

    def set_rotation(
        self, secret_id: str, rules: dict[str, Any] | None, lambda_arn: str | None
    ) -> tuple[dict[str, Any], bool]:
        """RotateSecret's schedule part; returns the secret's ARN/Name and whether it is service-managed.

        Only a secret that its owning service rotates (RDS's) can rotate here: there is no Lambda to call.
        """
        doc = copy.deepcopy(self._live(secret_id))
        managed = doc["owning_service"] is not None
        if not managed:
            raise _invalid_request(
                "Borealis cannot invoke rotation Lambda functions: only secrets managed by RDS (rds!...) rotate."
            )
        if lambda_arn is not None:
            raise _invalid_parameter("A secret managed by RDS rotates without a RotationLambdaARN.")
        current = doc.get("rotation") or {}
        if rules is not None or not current.get("enabled"):
            wanted = rules or current.get("rules") or {"AutomaticallyAfterDays": _MANAGED_ROTATION_DAYS}
            doc["rotation"] = _rotation(wanted, current.get("last"), self._clock())
            self._save(doc)
        return {"ARN": doc["arn"], "Name": doc["name"]}, managed

    def cancel_rotation(self, secret_id: str) -> dict[str, Any]:
        """CancelRotateSecret: no more scheduled rotations; a version left AWSPENDING loses the label."""
        doc = copy.deepcopy(self._live(secret_id))
        out: dict[str, Any] = {"ARN": doc["arn"], "Name": doc["name"]}
        pending = _holder(doc, AWSPENDING)
        if pending is not None:
            doc["versions"][pending]["stages"].remove(AWSPENDING)
            out["VersionId"] = pending
        if doc.get("rotation"):
            doc["rotation"]["enabled"] = False
            doc["rotation"]["next"] = None
        self._save(doc)
        return out

    def due_rotations(self) -> list[str]:
        """The ARNs of service-managed secrets whose next rotation date has come."""
        now = self._clock()
        return [
            d["arn"]
            for d in self._docs.values()
            if d["deleted"] is None
            and d["owning_service"] is not None
            and (d.get("rotation") or {}).get("enabled")
            and (d["rotation"].get("next") or float("inf")) <= now
        ]

    def batch_get_secret_value(
        self,
        secret_ids: Sequence[str] | None,
        filters: Sequence[dict[str, Any]] | None,
        max_results: int | None,
        next_token: str | None,
    ) -> dict[str, Any]:
        """BatchGetSecretValue: by up to 20 ids (one error entry per failure) or by ListSecrets filters."""
        if bool(secret_ids) == bool(filters):
            raise _invalid_parameter("Specify either SecretIdList or Filters, not both and not neither.")
        out: dict[str, Any] = {"SecretValues": [], "Errors": []}
        if secret_ids:
            if len(secret_ids) > 20 or max_results is not None:
                raise _invalid_parameter("SecretIdList takes at most 20 ids, and no MaxResults.")
            names = list(secret_ids)
        else:
            if max_results is not None and not 1 <= max_results <= 20:
                raise _invalid_parameter("MaxResults must be between 1 and 20.")
            listed = self.list_secrets(max_results=max_results or 20, next_token=next_token, filters=filters)
            names = [e["ARN"] for e in listed["SecretList"]]
            if "NextToken" in listed:
                out["NextToken"] = listed["NextToken"]
        for name in names:
            try:
                out["SecretValues"].append(self.get_secret_value(name))
            except AWSError as exc:
                out["Errors"].append({"SecretId": name, "ErrorCode": exc.code, "Message": exc.message})
        return out

    # ---- for the rest of Borealis ---------------------------------------------------------------

    def secret_json(self, secret_id: str) -> dict[str, Any]:
        """The AWSCURRENT SecretString of ``secret_id`` parsed as a JSON object (the Data API's and the
        proxy's fast path).

        Served from memory: the parsed value is cached until the next write to any secret. Raises
        AWSError("ResourceNotFoundException") for a missing secret or one scheduled for deletion, and
        AWSError("InvalidRequestException") when the value is binary or not a JSON object.
        """
        cached = self._json.get(secret_id)
        if cached is not None:
            return dict(cached)
        doc = self._find(secret_id)
        if doc is None or doc["deleted"] is not None:
            raise _not_found()
        vid = _holder(doc, AWSCURRENT)
        if vid is None:
            raise AWSError(
                "ResourceNotFoundException",
                f"Secrets Manager can't find the specified secret value for staging label: {AWSCURRENT}",
            )
        version = doc["versions"][vid]
        if version["kind"] != "string":
            raise _invalid_request("The secret value is binary, not a JSON SecretString.")
        try:
            parsed = json.loads(self._decrypt(version))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            # Never echo the value: it is the secret.
            raise _invalid_request("The secret's SecretString is not a JSON object.")
        self._json[secret_id] = parsed
        return dict(parsed)

    def delete_owned(self, arn: str) -> None:
        """Delete a service-owned secret at once (RDS, when it deletes the cluster); idempotent."""
        doc = self._docs.get(arn)
        if doc is not None:
            self._purge(doc)

    def purge_expired(self) -> int:
        """Delete every secret whose recovery window has ended; returns how many (for a janitor)."""
        now = self._clock()
        due = [d for d in self._docs.values() if d["deleted"] is not None and d["deleted"] <= now]
        for doc in due:
            self._purge(doc)
        self._next_purge = self._earliest_deletion()
        return len(due)

    # ---- internals ------------------------------------------------------------------------------

    def _find(self, secret_id: str) -> Doc | None:
        """The secret named by a name, a full ARN or a partial ARN (without the 6-character suffix)."""
        self._purge_due()
        if secret_id.startswith(self._arn_prefix):
            doc = self._docs.get(secret_id)
            if doc is not None:
                return doc
            arn = self._by_name.get(secret_id[len(self._arn_prefix) :])
        else:
            arn = self._by_name.get(secret_id)
        return None if arn is None else self._docs[arn]

    def _get(self, secret_id: str) -> Doc:
        doc = self._find(secret_id)
        if doc is None:
            raise _not_found()
        return doc

    def _live(self, secret_id: str) -> Doc:
        """The secret, which must not be scheduled for deletion."""
        doc = self._get(secret_id)
        if doc["deleted"] is not None:
            raise _invalid_request(_MSG_MARKED)
        return doc

    def _save(self, doc: Doc) -> None:
        # Store first: the mirror must never show what a failed write did not keep.
        self._table.put(doc["arn"], doc)
        self._docs[doc["arn"]] = doc
        self._by_name[doc["name"]] = doc["arn"]
        self._json.clear()
        if doc["deleted"] is not None:
            self._next_purge = min(self._next_purge, doc["deleted"])

    def _purge(self, doc: Doc) -> None:
        self._table.delete(doc["arn"])
        self._docs.pop(doc["arn"], None)
        if self._by_name.get(doc["name"]) == doc["arn"]:
            del self._by_name[doc["name"]]
        self._json.clear()

    def _purge_due(self) -> None:
        if not self._read_only and self._clock() >= self._next_purge:
            self.purge_expired()

    def _earliest_deletion(self) -> float:
        return min((d["deleted"] for d in self._docs.values() if d["deleted"] is not None), default=float("inf"))

    def _touch(self, doc: Doc, vid: str) -> None:
        """Record access with AWS's date precision, so a read writes at most once a day per version."""
        if self._read_only:
            return
        day = self._clock() // _DAY * _DAY
        if doc["accessed"] == day and doc["versions"][vid].get("accessed") == day:
            return
        doc = copy.deepcopy(doc)
        doc["accessed"] = day
        doc["versions"][vid]["accessed"] = day
        self._save(doc)

    def _decrypt(self, version: Doc) -> bytes:
        try:
            return self._cipher.decrypt(version["value"])
        except InvalidToken:
            raise AWSError(
                "DecryptionFailure", "Secrets Manager can't decrypt the protected secret text using the key."
            ) from None

    def _same_value(self, version: Doc, value: tuple[str, bytes]) -> bool:
        return bool(version["kind"] == value[0] and self._decrypt(version) == value[1])

    def _add_version(
        self, doc: Doc, vid: str, value: tuple[str, bytes], stages: Sequence[str] | None, now: float
    ) -> bool:
        """Add version ``vid`` to ``doc`` (in place); False when it is an idempotent repeat."""
        versions: dict[str, Doc] = doc["versions"]
        old = versions.get(vid)
        if old is not None:
            if self._same_value(old, value):
                return False
            raise AWSError(
                "ResourceExistsException",
                f"A version with VersionId {vid} already exists with a different value; "
                "you can't modify an existing version, you can only create a new version.",
            )
        versions[vid] = {
            "created": now,
            "accessed": None,
            "stages": [],
            "kind": value[0],
            "value": self._cipher.encrypt(value[1]),
        }
        for stage in [AWSCURRENT] if stages is None else list(dict.fromkeys(stages)):
            _move_stage(doc, stage, vid)
        if _holder(doc, AWSCURRENT) is None:
            _move_stage(doc, AWSCURRENT, vid)
        if len(versions) > _MAX_VERSIONS:
            deprecated = sorted((v["created"], k) for k, v in versions.items() if not v["stages"])
            for _, k in deprecated[: len(versions) - _MAX_VERSIONS]:
                del versions[k]
        return True

    def _entry(self, doc: Doc) -> dict[str, Any]:
        """The SecretListEntry for ``doc`` (DescribeSecret renames one member)."""
        out: dict[str, Any] = {"ARN": doc["arn"], "Name": doc["name"]}
        if doc["description"] is not None:
            out["Description"] = doc["description"]
        if doc["kms_key_id"]:
            out["KmsKeyId"] = doc["kms_key_id"]
        rotation = doc.get("rotation") or {}
        out["RotationEnabled"] = bool(rotation.get("enabled"))
        if rotation.get("rules"):
            out["RotationRules"] = dict(rotation["rules"])
        if rotation.get("last") is not None:
            out["LastRotatedDate"] = _when(rotation["last"])
        if rotation.get("enabled") and rotation.get("next") is not None:
            out["NextRotationDate"] = _when(rotation["next"])
        out["LastChangedDate"] = _when(doc["changed"])
        if doc["accessed"] is not None:
            out["LastAccessedDate"] = _when(doc["accessed"])
        if doc["deleted"] is not None:
            out["DeletedDate"] = _when(doc["deleted"])
        if doc["tags"]:
            out["Tags"] = [dict(t) for t in doc["tags"]]
        out["SecretVersionsToStages"] = {vid: list(v["stages"]) for vid, v in doc["versions"].items() if v["stages"]}
        if doc["owning_service"]:
            out["OwningService"] = doc["owning_service"]
        out["CreatedDate"] = _when(doc["created"])
        return out


# ---- pure helpers -------------------------------------------------------------------------------


def _value(secret_string: str | None, secret_binary: bytes | None, *, required: bool) -> tuple[str, bytes] | None:
    """The (kind, bytes) of a request's value, checked as AWS does."""
    if secret_string is not None and secret_binary is not None:
        raise _invalid_parameter("You can't specify both a SecretString and a SecretBinary in the same request.")
    if secret_string is not None:
        value = ("string", secret_string.encode("utf-8"))
    elif secret_binary is not None:
        value = ("binary", bytes(secret_binary))
    elif required:
        raise _invalid_request("You must provide either SecretString or SecretBinary.")
    else:
        return None
    if not 1 <= len(value[1]) <= _MAX_VALUE_BYTES:
        raise _invalid_parameter("The secret value must be between 1 and 65536 bytes.")
    return value


def _version_id(token: str | None) -> str:
    if token is None:
        return str(uuid.uuid4())
    if not 32 <= len(token) <= 64:
        raise _invalid_parameter("ClientRequestToken must be between 32 and 64 characters long.")
    return token


def _check_description(description: str | None) -> None:
    if description is not None and len(description) > 2048:
        raise _invalid_parameter("The description must be at most 2048 characters long.")


def _check_stages(stages: Sequence[str]) -> None:
    if not 1 <= len(stages) <= 20 or not all(1 <= len(s) <= 256 for s in stages):
        raise _invalid_parameter("VersionStages must hold 1 to 20 labels of 1 to 256 characters.")


def _check_owner(doc: Doc, caller: str | None) -> None:
    owner = doc["owning_service"]
    if owner is not None and owner != caller:
        raise _invalid_request(
            f"You can't modify secret {doc['name']} because it is managed by {owner}; use that service to change it."
        )


def _merge_tags(
    current: list[dict[str, str]], new: Sequence[dict[str, str]], *, reserved_ok: bool
) -> list[dict[str, str]]:
    """``current`` with ``new`` applied (same key: new value), in first-seen order; validated."""
    merged = {t["Key"]: t.get("Value", "") for t in current}
    for tag in new:
        key, value = tag.get("Key"), tag.get("Value", "")
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not isinstance(value, str) or len(value) > 256:
            raise _invalid_parameter("Tag keys must be 1 to 128 characters and values at most 256.")
        if key.startswith("aws:") and not reserved_ok:
            raise _invalid_parameter("Tag keys that start with aws: are reserved for AWS use.")
        merged[key] = value
    if len(merged) > 50:
        raise _invalid_parameter("A secret can have at most 50 tags.")
    return [{"Key": k, "Value": v} for k, v in merged.items()]


def _interval(rules: dict[str, Any]) -> float | None:
    """Seconds between rotations for RotationRules (None for a cron schedule: no date is computed)."""
    days, expression = rules.get("AutomaticallyAfterDays"), rules.get("ScheduleExpression")
    if days is not None and expression is not None:
        raise _invalid_parameter("You can't specify both AutomaticallyAfterDays and ScheduleExpression.")
    if days is not None:
        if not 1 <= days <= 1000:
            raise _invalid_parameter("AutomaticallyAfterDays must be between 1 and 1000.")
        return float(days) * _DAY
    if expression is None:
        raise _invalid_parameter("RotationRules needs AutomaticallyAfterDays or ScheduleExpression.")
    match = _RATE.match(expression)
    if match is not None:
        count, unit = int(match.group(1)), match.group(2)
        seconds = count * (3600.0 if unit.startswith("hour") else _DAY)
        if not 4 * 3600 <= seconds <= 1000 * _DAY:
            raise _invalid_parameter("A rotation rate must be between 4 hours and 1000 days.")
        return seconds
    if expression.startswith("cron(") and expression.endswith(")"):
        return None
    raise _invalid_parameter(f"Invalid ScheduleExpression: {expression}.")


def _rotation(rules: dict[str, Any], last: float | None, now: float) -> dict[str, Any]:
    """A rotation configuration from RotationRules, the next date counted from the last rotation (or now)."""
    interval = _interval(rules)
    shown = {k: v for k, v in rules.items() if v is not None}
    return {
        "enabled": True,
        "rules": shown,
        "interval": interval,
        "last": last,
        "next": None if interval is None else (last if last is not None else now) + interval,
    }


def _rotated(rotation: dict[str, Any], now: float) -> None:
    rotation["last"] = now
    if rotation.get("enabled") and rotation.get("interval") is not None:
        rotation["next"] = now + rotation["interval"]


def _holder(doc: Doc, stage: str) -> str | None:
    """The version carrying ``stage``, if any."""
    for vid, v in doc["versions"].items():
        if stage in v["stages"]:
            return str(vid)
    return None


def _move_stage(doc: Doc, stage: str, to_vid: str) -> None:
    """Attach ``stage`` to ``to_vid``, taking it off its holder; moving AWSCURRENT also moves AWSPREVIOUS."""
    versions = doc["versions"]
    previous = _holder(doc, stage)
    if previous == to_vid:
        return
    if previous is not None:
        versions[previous]["stages"].remove(stage)
    versions[to_vid]["stages"].append(stage)
    if stage == AWSCURRENT and previous is not None:
        _move_stage(doc, AWSPREVIOUS, previous)


def _select_version(doc: Doc, version_id: str | None, version_stage: str | None) -> str:
    if version_id is not None:
        version = doc["versions"].get(version_id)
        if version is None:
            raise AWSError(
                "ResourceNotFoundException",
                f"Secrets Manager can't find the specified secret value for VersionId: {version_id}",
            )
        if version_stage is not None and version_stage not in version["stages"]:
            raise _invalid_request("You provided a VersionStage that is not associated to the provided VersionId.")
        return version_id
    stage = version_stage or AWSCURRENT
    vid = _holder(doc, stage)
    if vid is None:
        raise AWSError(
            "ResourceNotFoundException",
            f"Secrets Manager can't find the specified secret value for staging label: {stage}",
        )
    return vid


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, TypeError, KeyError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise AWSError("InvalidNextTokenException", "The NextToken value is invalid.")
    return offset
