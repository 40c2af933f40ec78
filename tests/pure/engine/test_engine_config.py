"""Rendering pg_hba.conf and our settings file, parsing postmaster.pid, conninfo, socket paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from borealis.engine import EngineError
from borealis.engine._config import (
    IDENT_MAP,
    SETTINGS_FILE,
    conninfo,
    include_line,
    parse_pidfile,
    quote_setting,
    render_hba,
    render_ident,
    render_settings,
    socket_dir_for,
)

SUN_PATH_MAX = 107


def test_hba_scram_over_tcp_peer_through_the_map_on_socket_and_no_trust() -> None:
    rules = [line.split() for line in render_hba().splitlines() if line and not line.startswith("#")]
    assert ["local", "all", "all", "peer", f"map={IDENT_MAP}"] in rules
    assert ["local", "replication", "all", "peer", f"map={IDENT_MAP}"] in rules
    assert all(rule[:4] != ["local", "all", "all", "trust"] for rule in rules)
    assert not any("trust" in rule for rule in rules)
    assert ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"] in rules
    assert ["host", "all", "all", "::1/128", "scram-sha-256"] in rules
    assert ["host", "replication", "all", "127.0.0.1/32", "scram-sha-256"] in rules
    assert all(rule[-1] == "scram-sha-256" for rule in rules if rule[0] != "local")


def test_settings_render_listening_and_logging() -> None:
    text = render_settings(host="127.0.0.1", port=5433, socket_dir=Path("/tmp/s"))
    assert "listen_addresses = '127.0.0.1'" in text
    assert "port = '5433'" in text
    assert "unix_socket_directories = '/tmp/s'" in text
    assert "password_encryption = 'scram-sha-256'" in text
    assert "logging_collector = 'off'" in text


def test_caller_settings_win_and_are_quoted() -> None:
    text = render_settings(
        host="::1",
        port=1,
        socket_dir=Path("/tmp/s"),
        settings={
            "port": "6000",
            "work_mem": "8MB",
            "application_name": "it's",
            "pg_stat_statements.max": "5",
        },
    )
    assert "port = '6000'" in text
    assert "port = '1'" not in text
    assert "work_mem = '8MB'" in text
    assert "application_name = 'it''s'" in text
    assert "pg_stat_statements.max = '5'" in text


@pytest.mark.parametrize("name", ["", "work mem", "a;b", "x = 1\ny", "1abc", "a.b.c"])
def test_invalid_setting_name(name: str) -> None:
    with pytest.raises(EngineError, match="invalid PostgreSQL setting name"):
        render_settings(host="h", port=1, socket_dir=Path("/s"), settings={name: "1"})


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_value_with_line_break_is_refused(value: str) -> None:
    with pytest.raises(EngineError, match="line break"):
        quote_setting(value)


def test_quote_backslash() -> None:
    assert quote_setting("a\\b'c") == "'a\\\\b''c'"


def test_include_line_names_the_settings_file() -> None:
    assert f"include_if_exists = '{SETTINGS_FILE}'" in include_line()


def test_socket_dir_is_short_stable_and_distinct() -> None:
    deep = Path("/tmp/pytest-of-root/pytest-123/" + "x" * 150 + "/data")
    sock = socket_dir_for(deep)
    assert len(str(sock / ".s.PGSQL.65535.lock")) < SUN_PATH_MAX
    assert sock == socket_dir_for(deep)
    assert sock != socket_dir_for(deep.with_name("data2"))


def test_conninfo_round_trips_through_libpq_parser() -> None:
    dsn = conninfo(host="127.0.0.1", port=5432, user="ad min", password="p'a\\ss word", dbname="d b")
    assert conninfo_to_dict(dsn) == {
        "host": "127.0.0.1",
        "port": "5432",
        "user": "ad min",
        "password": "p'a\\ss word",
        "dbname": "d b",
    }


def test_parse_pidfile_ready() -> None:
    text = "4242\n/data\n1700000000\n5433\n/tmp/borealis-x\n127.0.0.1\n  1234  5678\nready   \n"
    pidfile = parse_pidfile(text)
    assert pidfile is not None
    assert (pidfile.pid, pidfile.datadir, pidfile.port) == (4242, "/data", 5433)
    assert (pidfile.socket_dir, pidfile.status) == ("/tmp/borealis-x", "ready")


def test_parse_pidfile_while_starting() -> None:
    pidfile = parse_pidfile("4242\n/data\n1700000000\n5433\n")
    assert pidfile is not None
    assert pidfile.status is None


@pytest.mark.parametrize("text", ["", "\n", "garbage\n"])
def test_parse_pidfile_torn(text: str) -> None:
    assert parse_pidfile(text) is None


def test_ident_maps_only_the_given_os_user_to_every_role() -> None:
    rules = [line.split() for line in render_ident("alice").splitlines() if line and not line.startswith("#")]
    assert rules == [[IDENT_MAP, '"alice"', "all"]]


@pytest.mark.parametrize("name", ["", 'a"b', "a\nb"])
def test_ident_refuses_names_it_cannot_quote(name: str) -> None:
    with pytest.raises(EngineError, match=r"pg_ident\.conf"):
        render_ident(name)


def test_conninfo_without_password_sends_none() -> None:
    dsn = conninfo(host="/tmp/borealis-x", port=5432, user="rdsadmin", dbname="postgres")
    assert conninfo_to_dict(dsn) == {
        "host": "/tmp/borealis-x",
        "port": "5432",
        "user": "rdsadmin",
        "dbname": "postgres",
    }
