"""Domain tests for borealis.secrets: versions, stages, deletion windows, encryption at rest, caching."""

from __future__ import annotations

import datetime as dt
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from borealis.aws import AWSError
from borealis.secrets import SecretsManager
from borealis.store import Store

ACCOUNT = "123456789012"
REGION = "us-east-1"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAY = 86400.0
TOKEN_A = "a" * 32
TOKEN_B = "b" * 32


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def sm(store: Store, tmp_path: Path, clock: Clock) -> SecretsManager:
    return SecretsManager(store, tmp_path / "secrets.key", account_id=ACCOUNT, region=REGION, clock=clock)


def code_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(AWSError) as info:
        fn(*args, **kwargs)
    return info.value.code


# ---- create / get ---------------------------------------------------------------------------------


def test_create_and_get(sm: SecretsManager) -> None:
    out = sm.create_secret("app/db", secret_string='{"username":"u","password":"p"}', description="d")
    assert re.fullmatch(rf"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/db-[A-Za-z0-9]{{6}}", out["ARN"])
    assert out["Name"] == "app/db"
    got = sm.get_secret_value("app/db")
    assert got["SecretString"] == '{"username":"u","password":"p"}'
    assert got["VersionId"] == out["VersionId"]
    assert got["VersionStages"] == ["AWSCURRENT"]
    assert got["CreatedDate"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert "SecretBinary" not in got


def test_secret_id_forms(sm: SecretsManager) -> None:
    arn = sm.create_secret("x", secret_string="v")["ARN"]
    partial = arn[:-7]
    for secret_id in ("x", arn, partial):
        assert sm.get_secret_value(secret_id)["ARN"] == arn
    assert code_of(sm.get_secret_value, arn[:-1] + "!") == "ResourceNotFoundException"
    assert code_of(sm.get_secret_value, "nope") == "ResourceNotFoundException"


def test_binary_value(sm: SecretsManager) -> None:
    sm.create_secret("bin", secret_binary=b"\x00\xffkey")
    got = sm.get_secret_value("bin")
    assert got["SecretBinary"] == b"\x00\xffkey"
    assert "SecretString" not in got


def test_create_without_value_has_no_version(sm: SecretsManager) -> None:
    out = sm.create_secret("empty")
    assert "VersionId" not in out
    assert code_of(sm.get_secret_value, "empty") == "ResourceNotFoundException"
    assert sm.describe_secret("empty")["VersionIdsToStages"] == {}
    # The first value put later becomes AWSCURRENT even when other labels were asked for.
    put = sm.put_secret_value("empty", secret_string="v", version_stages=["MINE"])
    assert sorted(put["VersionStages"]) == ["AWSCURRENT", "MINE"]


def test_value_validation(sm: SecretsManager) -> None:
    assert code_of(sm.create_secret, "a", secret_string="s", secret_binary=b"b") == "InvalidParameterException"
    assert code_of(sm.create_secret, "a", secret_string="x" * 65537) == "InvalidParameterException"
    assert code_of(sm.create_secret, "bad name") == "InvalidParameterException"
    assert code_of(sm.create_secret, "rds!cluster-1") == "InvalidParameterException"
    assert code_of(sm.create_secret, "a", client_request_token="short") == "InvalidParameterException"
    sm.create_secret("a", secret_string="v")
    assert code_of(sm.put_secret_value, "a") == "InvalidRequestException"
    assert code_of(sm.put_secret_value, "a", secret_string="s", secret_binary=b"b") == "InvalidParameterException"


def test_name_taken(sm: SecretsManager) -> None:
    sm.create_secret("a", secret_string="v")
    assert code_of(sm.create_secret, "a", secret_string="v") == "ResourceExistsException"


def test_create_is_idempotent_by_token(sm: SecretsManager) -> None:
    first = sm.create_secret("a", secret_string="v", client_request_token=TOKEN_A)
    assert first["VersionId"] == TOKEN_A
    assert sm.create_secret("a", secret_string="v", client_request_token=TOKEN_A) == first
    assert code_of(sm.create_secret, "a", secret_string="w", client_request_token=TOKEN_A) == "ResourceExistsException"


# ---- versions and stages --------------------------------------------------------------------------


def test_stages_move_on_put(sm: SecretsManager, clock: Clock) -> None:
    v1 = sm.create_secret("s", secret_string="one")["VersionId"]
    clock.now += 1
    v2 = sm.put_secret_value("s", secret_string="two")["VersionId"]
    assert sm.get_secret_value("s")["SecretString"] == "two"
    prev = sm.get_secret_value("s", version_stage="AWSPREVIOUS")
    assert (prev["VersionId"], prev["SecretString"]) == (v1, "one")
    clock.now += 1
    v3 = sm.put_secret_value("s", secret_string="three")["VersionId"]
    stages = sm.describe_secret("s")["VersionIdsToStages"]
    # v1 lost its last label: it is deprecated and no longer listed.
    assert stages == {v2: ["AWSPREVIOUS"], v3: ["AWSCURRENT"]}
    assert sm.get_secret_value("s", version_id=v1)["SecretString"] == "one"
    listed = sm.list_secret_version_ids("s")["Versions"]
    assert [v["VersionId"] for v in listed] == [v3, v2]
    listed = sm.list_secret_version_ids("s", include_deprecated=True)["Versions"]
    assert [v["VersionId"] for v in listed] == [v3, v2, v1]


def test_put_with_custom_stage_keeps_current(sm: SecretsManager) -> None:
    v1 = sm.create_secret("s", secret_string="one")["VersionId"]
    out = sm.put_secret_value("s", secret_string="pending", version_stages=["AWSPENDING"])
    assert out["VersionStages"] == ["AWSPENDING"]
    assert sm.get_secret_value("s")["VersionId"] == v1
    assert sm.get_secret_value("s", version_stage="AWSPENDING")["SecretString"] == "pending"


def test_put_is_idempotent_by_token(sm: SecretsManager) -> None:
    sm.create_secret("s", secret_string="one")
    first = sm.put_secret_value("s", secret_string="two", client_request_token=TOKEN_B)
    again = sm.put_secret_value("s", secret_string="two", client_request_token=TOKEN_B)
    assert again == first
    assert len(sm.list_secret_version_ids("s", include_deprecated=True)["Versions"]) == 2
    assert (
        code_of(sm.put_secret_value, "s", secret_string="other", client_request_token=TOKEN_B)
        == "ResourceExistsException"
    )


def test_get_version_selection_errors(sm: SecretsManager) -> None:
    v1 = sm.create_secret("s", secret_string="one")["VersionId"]
    assert code_of(sm.get_secret_value, "s", version_id="f" * 32) == "ResourceNotFoundException"
    assert code_of(sm.get_secret_value, "s", version_stage="AWSPREVIOUS") == "ResourceNotFoundException"
    assert code_of(sm.get_secret_value, "s", version_id=v1, version_stage="X") == "InvalidRequestException"
    assert sm.get_secret_value("s", version_id=v1, version_stage="AWSCURRENT")["SecretString"] == "one"


def test_update_secret(sm: SecretsManager, clock: Clock) -> None:
    sm.create_secret("s", secret_string="one", description="old")
    clock.now += 60
    out = sm.update_secret("s", description="new")
    assert "VersionId" not in out
    desc = sm.describe_secret("s")
    assert desc["Description"] == "new"
    assert desc["LastChangedDate"] == dt.datetime.fromtimestamp(T0 + 60, dt.UTC)
    out = sm.update_secret("s", secret_string="two", client_request_token=TOKEN_A, kms_key_id="alias/mine")
    assert out["VersionId"] == TOKEN_A
    assert sm.get_secret_value("s")["SecretString"] == "two"
    assert sm.describe_secret("s")["KmsKeyId"] == "alias/mine"
    assert code_of(sm.update_secret, "s", secret_string="three", client_request_token=TOKEN_A) == (
        "ResourceExistsException"
    )


def test_update_secret_version_stage(sm: SecretsManager) -> None:
    v1 = sm.create_secret("s", secret_string="one")["VersionId"]
    v2 = sm.put_secret_value("s", secret_string="two")["VersionId"]
    # Roll back: AWSCURRENT must name the version it comes from.
    assert (
        code_of(sm.update_secret_version_stage, "s", "AWSCURRENT", move_to_version_id=v1) == "InvalidParameterException"
    )
    sm.update_secret_version_stage("s", "AWSCURRENT", move_to_version_id=v1, remove_from_version_id=v2)
    assert sm.get_secret_value("s")["VersionId"] == v1
    assert sm.get_secret_value("s", version_stage="AWSPREVIOUS")["VersionId"] == v2
    assert (
        code_of(sm.update_secret_version_stage, "s", "AWSCURRENT", remove_from_version_id=v1)
        == "InvalidParameterException"
    )
    sm.update_secret_version_stage("s", "AWSPREVIOUS", remove_from_version_id=v2)
    assert sm.describe_secret("s")["VersionIdsToStages"] == {v1: ["AWSCURRENT"]}


# ---- deletion -------------------------------------------------------------------------------------


def test_delete_with_default_window_then_restore(sm: SecretsManager, clock: Clock) -> None:
    sm.create_secret("s", secret_string="v")
    out = sm.delete_secret("s")
    assert out["DeletionDate"] == dt.datetime.fromtimestamp(T0 + 30 * DAY, dt.UTC)
    assert code_of(sm.get_secret_value, "s") == "InvalidRequestException"
    assert code_of(sm.put_secret_value, "s", secret_string="w") == "InvalidRequestException"
    assert code_of(sm.update_secret, "s", description="x") == "InvalidRequestException"
    assert code_of(sm.tag_resource, "s", [{"Key": "k", "Value": "v"}]) == "InvalidRequestException"
    assert code_of(sm.delete_secret, "s") == "InvalidRequestException"
    assert code_of(sm.create_secret, "s", secret_string="v") == "InvalidRequestException"
    assert sm.describe_secret("s")["DeletedDate"] == out["DeletionDate"]
    assert sm.list_secrets()["SecretList"] == []
    assert [e["Name"] for e in sm.list_secrets(include_planned_deletion=True)["SecretList"]] == ["s"]
    sm.restore_secret("s")
    assert sm.get_secret_value("s")["SecretString"] == "v"
    assert "DeletedDate" not in sm.describe_secret("s")


def test_recovery_window_expires(sm: SecretsManager, clock: Clock) -> None:
    arn = sm.create_secret("s", secret_string="v")["ARN"]
    sm.delete_secret("s", recovery_window_in_days=7)
    clock.now += 7 * DAY - 1
    assert sm.describe_secret("s")["ARN"] == arn
    clock.now += 1
    assert code_of(sm.describe_secret, "s") == "ResourceNotFoundException"
    assert code_of(sm.restore_secret, "s") == "ResourceNotFoundException"
    # The name is free again, under a new ARN suffix (one in 62**6 chance of the same one).
    assert sm.create_secret("s", secret_string="w")["ARN"] != arn


def test_purge_expired_for_a_janitor(sm: SecretsManager, clock: Clock) -> None:
    sm.create_secret("a", secret_string="v")
    sm.create_secret("b", secret_string="v")
    sm.delete_secret("a", recovery_window_in_days=7)
    assert sm.purge_expired() == 0
    clock.now += 8 * DAY
    assert sm.purge_expired() == 1
    assert [e["Name"] for e in sm.list_secrets(include_planned_deletion=True)["SecretList"]] == ["b"]


def test_delete_parameter_rules(sm: SecretsManager) -> None:
    sm.create_secret("s", secret_string="v")
    for window in (6, 31):
        assert code_of(sm.delete_secret, "s", recovery_window_in_days=window) == "InvalidParameterException"
    assert (
        code_of(sm.delete_secret, "s", recovery_window_in_days=7, force_delete_without_recovery=True)
        == "InvalidParameterException"
    )
    assert code_of(sm.delete_secret, "missing") == "ResourceNotFoundException"


def test_force_delete(sm: SecretsManager, clock: Clock) -> None:
    sm.create_secret("s", secret_string="v")
    out = sm.delete_secret("s", force_delete_without_recovery=True)
    assert out["DeletionDate"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert code_of(sm.describe_secret, "s") == "ResourceNotFoundException"
    sm.create_secret("s", secret_string="again")
    # Forcing the delete of a missing secret succeeds, as AWS documents.
    assert sm.delete_secret("never", force_delete_without_recovery=True)["Name"] == "never"
    # A scheduled secret can still be force-deleted.
    sm.delete_secret("s")
    sm.delete_secret("s", force_delete_without_recovery=True)
    assert code_of(sm.describe_secret, "s") == "ResourceNotFoundException"


# ---- persistence and encryption -------------------------------------------------------------------


def test_values_encrypted_at_rest(sm: SecretsManager, store: Store, tmp_path: Path) -> None:
    plaintext = "hunter2-very-secret-Plaintext"
    sm.create_secret("s", secret_string=plaintext)
    sm.put_secret_value("s", secret_binary=b"binary-very-secret-Plaintext")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert raw  # the WAL and/or main file hold the documents
    assert b"hunter2" not in raw
    assert b"binary-very-secret" not in raw
    key_file = tmp_path / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_state_survives_a_restart(sm: SecretsManager, store: Store, tmp_path: Path, clock: Clock) -> None:
    arn = sm.create_secret("s", secret_string="v", tags=[{"Key": "k", "Value": "v"}])["ARN"]
    again = SecretsManager(store, tmp_path / "secrets.key", account_id=ACCOUNT, region=REGION, clock=clock)
    assert again.get_secret_value(arn)["SecretString"] == "v"
    assert again.describe_secret("s")["Tags"] == [{"Key": "k", "Value": "v"}]
    other_key = SecretsManager(store, tmp_path / "other.key", account_id=ACCOUNT, region=REGION, clock=clock)
    assert code_of(other_key.get_secret_value, "s") == "DecryptionFailure"


def test_last_accessed_has_date_precision(sm: SecretsManager, clock: Clock) -> None:
    sm.create_secret("s", secret_string="v")
    assert "LastAccessedDate" not in sm.describe_secret("s")
    sm.get_secret_value("s")
    midnight = dt.datetime.fromtimestamp(T0, dt.UTC).replace(hour=0, minute=0, second=0)
    assert sm.describe_secret("s")["LastAccessedDate"] == midnight


# ---- secret_json, the fast path -------------------------------------------------------------------


def test_secret_json_is_cached_and_invalidated(sm: SecretsManager, store: Store) -> None:
    arn = sm.create_secret("db", secret_string='{"username":"a","password":"1"}')["ARN"]
    assert sm.secret_json(arn) == {"username": "a", "password": "1"}
    sm.put_secret_value(arn, secret_string='{"username":"a","password":"2"}')
    assert sm.secret_json(arn)["password"] == "2"
    # Cached: it must answer without the disk, even with the database closed underneath it.
    store.close()
    assert sm.secret_json(arn)["password"] == "2"
    sm.secret_json(arn)["password"] = "mutated"
    assert sm.secret_json(arn)["password"] == "2"


def test_secret_json_errors(sm: SecretsManager) -> None:
    assert code_of(sm.secret_json, "missing") == "ResourceNotFoundException"
    sm.create_secret("text", secret_string="not json")
    assert code_of(sm.secret_json, "text") == "InvalidRequestException"
    sm.create_secret("db", secret_string='{"password":"p"}')
    sm.secret_json("db")
    sm.delete_secret("db")
    assert code_of(sm.secret_json, "db") == "ResourceNotFoundException"


# ---- service-owned secrets ------------------------------------------------------------------------


def test_rds_owned_secret(sm: SecretsManager) -> None:
    cluster_arn = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:c1"
    name = "rds!cluster-0b2a3c4d-1111-2222-3333-444455556666"
    out = sm.create_secret(
        name,
        secret_string='{"username":"postgres","password":"p"}',
        tags=[{"Key": "aws:rds:primaryDBClusterArn", "Value": cluster_arn}],
        owning_service="rds",
    )
    desc = sm.describe_secret(out["ARN"])
    assert desc["OwningService"] == "rds"
    assert {"Key": "aws:rds:primaryDBClusterArn", "Value": cluster_arn} in desc["Tags"]
    assert {"Key": "aws:secretsmanager:owningService", "Value": "rds"} in desc["Tags"]
    # Users cannot change or delete it; RDS can.
    assert code_of(sm.put_secret_value, name, secret_string="x") == "InvalidRequestException"
    assert code_of(sm.update_secret, name, secret_string="x") == "InvalidRequestException"
    assert code_of(sm.delete_secret, name) == "InvalidRequestException"
    sm.put_secret_value(name, secret_string='{"username":"postgres","password":"q"}', owning_service="rds")
    assert sm.secret_json(name)["password"] == "q"
    assert sm.list_secrets(filters=[{"Key": "owning-service", "Values": ["rds"]}])["SecretList"][0]["Name"] == name
    sm.delete_owned(out["ARN"])
    sm.delete_owned(out["ARN"])
    assert code_of(sm.describe_secret, name) == "ResourceNotFoundException"


def test_tags(sm: SecretsManager) -> None:
    sm.create_secret("s", secret_string="v", tags=[{"Key": "a", "Value": "1"}])
    sm.tag_resource("s", [{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    assert sm.describe_secret("s")["Tags"] == [{"Key": "a", "Value": "3"}, {"Key": "b", "Value": "2"}]
    sm.untag_resource("s", ["a", "zzz"])
    assert sm.describe_secret("s")["Tags"] == [{"Key": "b", "Value": "2"}]
    assert code_of(sm.tag_resource, "s", [{"Key": "aws:x", "Value": "1"}]) == "InvalidParameterException"
    assert code_of(sm.create_secret, "t", tags=[{"Key": "aws:x", "Value": "1"}]) == "InvalidParameterException"
    assert code_of(sm.tag_resource, "missing", [{"Key": "a", "Value": "1"}]) == "ResourceNotFoundException"


# ---- listing --------------------------------------------------------------------------------------


@pytest.fixture
def listed(sm: SecretsManager, clock: Clock) -> SecretsManager:
    specs: list[tuple[str, str, list[dict[str, str]]]] = [
        ("prod/DatabaseSecret", "Main database credentials", [{"Key": "env", "Value": "prod"}]),
        (
            "prod/api-key",
            "Payment API key",
            [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "pay"}],
        ),
        ("dev/databaseSecret", "dev db", [{"Key": "env", "Value": "dev"}]),
    ]
    for name, description, tags in specs:
        clock.now += 1
        sm.create_secret(name, secret_string="v", description=description, tags=tags)
    return sm


def names(sm: SecretsManager, filters: list[dict[str, Any]], **kwargs: Any) -> list[str]:
    return [e["Name"] for e in sm.list_secrets(filters=filters, **kwargs)["SecretList"]]


def test_list_filters(listed: SecretsManager) -> None:
    assert names(listed, [{"Key": "name", "Values": ["prod/"]}]) == ["prod/DatabaseSecret", "prod/api-key"]
    assert names(listed, [{"Key": "name", "Values": ["Prod/"]}]) == []
    assert names(listed, [{"Key": "name", "Values": ["!prod/"]}]) == ["dev/databaseSecret"]
    assert names(listed, [{"Key": "description", "Values": ["DATABASE cred"]}]) == ["prod/DatabaseSecret"]
    assert names(listed, [{"Key": "tag-key", "Values": ["te"]}]) == ["prod/api-key"]
    assert names(listed, [{"Key": "tag-value", "Values": ["dev", "pay"]}]) == [
        "prod/api-key",
        "dev/databaseSecret",
    ]
    # Filters are AND-ed.
    assert names(listed, [{"Key": "tag-value", "Values": ["prod"]}, {"Key": "name", "Values": ["prod/D"]}]) == [
        "prod/DatabaseSecret"
    ]
    assert names(listed, [{"Key": "all", "Values": ["payment"]}]) == ["prod/api-key"]
    assert names(listed, [{"Key": "all", "Values": ["DATABASE"]}]) == [
        "prod/DatabaseSecret",
        "dev/databaseSecret",
    ]
    assert names(listed, [{"Key": "primary-region", "Values": ["us"]}]) == []
    entry = listed.list_secrets()["SecretList"][0]
    assert set(entry) >= {"ARN", "Name", "Description", "Tags", "SecretVersionsToStages", "CreatedDate"}


def test_list_sorting_and_pages(listed: SecretsManager) -> None:
    assert names(listed, [], sort_by="name") == ["dev/databaseSecret", "prod/DatabaseSecret", "prod/api-key"]
    assert names(listed, [], sort_order="desc")[0] == "dev/databaseSecret"
    page = listed.list_secrets(max_results=2)
    assert len(page["SecretList"]) == 2
    rest = listed.list_secrets(max_results=2, next_token=page["NextToken"])
    assert [e["Name"] for e in rest["SecretList"]] == ["dev/databaseSecret"]
    assert "NextToken" not in rest


def test_list_errors(listed: SecretsManager) -> None:
    assert code_of(listed.list_secrets, next_token="garbage") == "InvalidNextTokenException"
    assert code_of(listed.list_secrets, filters=[{"Key": "colour", "Values": ["x"]}]) == "InvalidParameterException"
    assert code_of(listed.list_secrets, filters=[{"Key": "name", "Values": ["a*"]}]) == "InvalidParameterException"
    assert code_of(listed.list_secrets, max_results=101) == "InvalidParameterException"


def test_a_read_only_reader_never_writes(sm: SecretsManager, store: Store, tmp_path: Path, clock: Clock) -> None:
    """A Data API worker reads secrets beside the main process: no purge, no access dates written."""
    sm.create_secret("kept", secret_string='{"username": "u", "password": "p"}')
    sm.create_secret("due", secret_string="v")
    sm.delete_secret("due", recovery_window_in_days=7)
    clock.now += 8 * DAY  # "due" may be purged now, and "kept" was last read another day
    before = {arn: dict(doc) for arn, doc in store.table("secrets").items()}
    reader = SecretsManager(
        store, tmp_path / "secrets.key", account_id=ACCOUNT, region=REGION, clock=clock, read_only=True
    )
    assert reader.secret_json("kept") == {"username": "u", "password": "p"}
    assert code_of(reader.secret_json, "due") == "ResourceNotFoundException"
    assert reader.get_secret_value("kept")["SecretString"] == '{"username": "u", "password": "p"}'
    assert {arn: dict(doc) for arn, doc in store.table("secrets").items()} == before
    assert sm.purge_expired() == 1  # the owner still does
