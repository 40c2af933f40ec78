"""The Secrets Manager API (JSON 1.1, ``secretsmanager.<Operation>``): thin handlers over the domain.

The gateway parses each request with botocore's model into boto-style params and serializes what a
handler returns; a handler only maps PascalCase members to the domain's keywords. Members Borealis cannot
honour (replication to other regions, cross-account replicas, external partner secrets) are refused
with InvalidRequestException rather than silently ignored.

Rotation: a secret managed by RDS (``rds!cluster-...``) rotates through RDS's own rotation of the master
password (``rotate_owned``, the same path as ModifyDBCluster's RotateMasterUserPassword); other secrets would
need a Lambda function, which Borealis does not run, so RotateSecret refuses them. Resource policies are
validated and kept, not enforced (no IAM).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.secrets import AWSCURRENT, SecretsManager, random_password

__all__ = ["handlers"]

Params = dict[str, Any]


def _refuse(params: Params, *members: str) -> None:
    for member in members:
        if params.get(member) is not None:
            raise AWSError("InvalidRequestException", f"Borealis does not support {member}.")


def handlers(
    secrets: SecretsManager, rotate_owned: Callable[[str], Awaitable[None]] | None = None
) -> dict[str, Handler]:
    """The handler of every supported Secrets Manager operation, by operation name.

    ``rotate_owned(arn)`` rotates a service-managed secret now (its owning service makes the new value).
    """

    async def create_secret(ctx: RequestContext, p: Params) -> Params:
        _refuse(p, "AddReplicaRegions", "CrossAccountPrimaryARN", "Type")
        return secrets.create_secret(
            p["Name"],
            secret_string=p.get("SecretString"),
            secret_binary=p.get("SecretBinary"),
            description=p.get("Description"),
            tags=p.get("Tags"),
            client_request_token=p.get("ClientRequestToken"),
            kms_key_id=p.get("KmsKeyId"),
        )

    async def get_secret_value(ctx: RequestContext, p: Params) -> Params:
        return secrets.get_secret_value(p["SecretId"], p.get("VersionId"), p.get("VersionStage"))

    async def put_secret_value(ctx: RequestContext, p: Params) -> Params:
        _refuse(p, "RotationToken")
        return secrets.put_secret_value(
            p["SecretId"],
            client_request_token=p.get("ClientRequestToken"),
            secret_string=p.get("SecretString"),
            secret_binary=p.get("SecretBinary"),
            version_stages=p.get("VersionStages"),
        )

    async def update_secret(ctx: RequestContext, p: Params) -> Params:
        _refuse(p, "Type")
        return secrets.update_secret(
            p["SecretId"],
            client_request_token=p.get("ClientRequestToken"),
            description=p.get("Description"),
            kms_key_id=p.get("KmsKeyId"),
            secret_string=p.get("SecretString"),
            secret_binary=p.get("SecretBinary"),
        )

    async def describe_secret(ctx: RequestContext, p: Params) -> Params:
        return secrets.describe_secret(p["SecretId"])

    async def list_secrets(ctx: RequestContext, p: Params) -> Params:
        return secrets.list_secrets(
            include_planned_deletion=bool(p.get("IncludePlannedDeletion", False)),
            max_results=p.get("MaxResults"),
            next_token=p.get("NextToken"),
            filters=p.get("Filters"),
            sort_order=p.get("SortOrder"),
            sort_by=p.get("SortBy"),
        )

    async def delete_secret(ctx: RequestContext, p: Params) -> Params:
        return secrets.delete_secret(
            p["SecretId"],
            recovery_window_in_days=p.get("RecoveryWindowInDays"),
            force_delete_without_recovery=bool(p.get("ForceDeleteWithoutRecovery", False)),
        )

    async def restore_secret(ctx: RequestContext, p: Params) -> Params:
        return secrets.restore_secret(p["SecretId"])

    async def tag_resource(ctx: RequestContext, p: Params) -> Params:
        return secrets.tag_resource(p["SecretId"], p["Tags"])

    async def untag_resource(ctx: RequestContext, p: Params) -> Params:
        return secrets.untag_resource(p["SecretId"], p["TagKeys"])

    async def update_secret_version_stage(ctx: RequestContext, p: Params) -> Params:
        return secrets.update_secret_version_stage(
            p["SecretId"],
            p["VersionStage"],
            remove_from_version_id=p.get("RemoveFromVersionId"),
            move_to_version_id=p.get("MoveToVersionId"),
        )

    async def list_secret_version_ids(ctx: RequestContext, p: Params) -> Params:
        return secrets.list_secret_version_ids(
            p["SecretId"],
            max_results=p.get("MaxResults"),
            next_token=p.get("NextToken"),
            include_deprecated=bool(p.get("IncludeDeprecated", False)),
        )

    async def get_random_password(ctx: RequestContext, p: Params) -> Params:
        password = random_password(
            password_length=int(p.get("PasswordLength", 32)),
            exclude_characters=p.get("ExcludeCharacters") or "",
            exclude_numbers=bool(p.get("ExcludeNumbers", False)),
            exclude_punctuation=bool(p.get("ExcludePunctuation", False)),
            exclude_uppercase=bool(p.get("ExcludeUppercase", False)),
            exclude_lowercase=bool(p.get("ExcludeLowercase", False)),
            include_space=bool(p.get("IncludeSpace", False)),
            require_each_included_type=bool(p.get("RequireEachIncludedType", True)),
        )
        return {"RandomPassword": password}

    async def put_resource_policy(ctx: RequestContext, p: Params) -> Params:
        return secrets.put_resource_policy(
            p["SecretId"], p["ResourcePolicy"], block_public=bool(p.get("BlockPublicPolicy", True))
        )

    async def get_resource_policy(ctx: RequestContext, p: Params) -> Params:
        return secrets.get_resource_policy(p["SecretId"])

    async def delete_resource_policy(ctx: RequestContext, p: Params) -> Params:
        return secrets.delete_resource_policy(p["SecretId"])

    async def validate_resource_policy(ctx: RequestContext, p: Params) -> Params:
        return secrets.validate_resource_policy(p.get("SecretId"), p["ResourcePolicy"])

    async def rotate_secret(ctx: RequestContext, p: Params) -> Params:
        _refuse(p, "ExternalSecretRotationMetadata", "ExternalSecretRotationRoleArn")
        out, _ = secrets.set_rotation(p["SecretId"], p.get("RotationRules"), p.get("RotationLambdaARN"))
        if p.get("RotateImmediately", True):
            if rotate_owned is None:
                raise AWSError("InvalidRequestException", "The owning service of this secret cannot rotate it.")
            await rotate_owned(out["ARN"])
        stages = secrets.describe_secret(out["ARN"])["VersionIdsToStages"]
        out["VersionId"] = next(v for v, s in stages.items() if AWSCURRENT in s)
        return out

    async def cancel_rotate_secret(ctx: RequestContext, p: Params) -> Params:
        return secrets.cancel_rotation(p["SecretId"])

    async def batch_get_secret_value(ctx: RequestContext, p: Params) -> Params:
        return secrets.batch_get_secret_value(
            p.get("SecretIdList"), p.get("Filters"), p.get("MaxResults"), p.get("NextToken")
        )

    return {
        "PutResourcePolicy": put_resource_policy,
        "GetResourcePolicy": get_resource_policy,
        "DeleteResourcePolicy": delete_resource_policy,
        "ValidateResourcePolicy": validate_resource_policy,
        "RotateSecret": rotate_secret,
        "CancelRotateSecret": cancel_rotate_secret,
        "BatchGetSecretValue": batch_get_secret_value,
        "CreateSecret": create_secret,
        "GetSecretValue": get_secret_value,
        "PutSecretValue": put_secret_value,
        "UpdateSecret": update_secret,
        "DescribeSecret": describe_secret,
        "ListSecrets": list_secrets,
        "DeleteSecret": delete_secret,
        "RestoreSecret": restore_secret,
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "UpdateSecretVersionStage": update_secret_version_stage,
        "ListSecretVersionIds": list_secret_version_ids,
        "GetRandomPassword": get_random_password,
    }
