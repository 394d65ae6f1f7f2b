"""The aurora-storage command line, run in-process through click's runner."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from aurora_storage.cli import cli


def test_backends_lists_the_builtin_schemes() -> None:
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    for scheme in ("memory", "rocksdb", "lmdb"):
        assert scheme in result.output


def test_unknown_scheme_is_a_clean_error_with_exit_status_1() -> None:
    result = CliRunner().invoke(cli, ["info", "nosuch:///x"])
    assert result.exit_code == 1
    assert "BackendNotFoundError" in result.output
    assert "memory" in result.output  # names the installed schemes
    assert "Traceback" not in result.output


def test_bad_option_names_the_valid_ones() -> None:
    result = CliRunner().invoke(cli, ["info", "memory://?bogus=1"])
    assert result.exit_code == 1
    assert "InvalidURLError" in result.output
    assert "bogus" in result.output


def test_put_get_keys_delete_round_trip_on_a_persistent_store(tmp_path) -> None:
    url = f"rocksdb://{tmp_path}/store"
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["put", url, "acme", '["order", 2]', '{"status": "paid"}']).exit_code
        == 0
    )
    assert runner.invoke(cli, ["put", url, "acme", '["order", 10]', '"created"']).exit_code == 0
    assert runner.invoke(cli, ["put", url, "acme-corp", "other", "1"]).exit_code == 0

    got = runner.invoke(cli, ["get", url, "acme", '["order", 2]'])
    assert got.exit_code == 0, got.output
    assert orjson.loads(got.output) == {"status": "paid"}

    keys = runner.invoke(cli, ["keys", url, "acme"])
    assert keys.exit_code == 0, keys.output
    assert [orjson.loads(line) for line in keys.output.splitlines()] == [
        ["order", 2],
        ["order", 10],
    ]

    tenants = runner.invoke(cli, ["tenants", url])
    assert tenants.output.splitlines() == ["acme", "acme-corp"]

    assert runner.invoke(cli, ["delete", url, "acme", '["order", 2]']).exit_code == 0
    assert runner.invoke(cli, ["delete", url, "acme", '["order", 2]']).exit_code == 1
    missing = runner.invoke(cli, ["get", url, "acme", '["order", 2]'])
    assert missing.exit_code == 1


def test_drop_tenant_requires_confirmation(tmp_path) -> None:
    url = f"rocksdb://{tmp_path}/store"
    runner = CliRunner()
    runner.invoke(cli, ["put", url, "acme", "k", "1"])
    refused = runner.invoke(cli, ["drop-tenant", url, "acme"])
    assert refused.exit_code != 0
    assert runner.invoke(cli, ["get", url, "acme", "k"]).exit_code == 0
    done = runner.invoke(cli, ["drop-tenant", url, "acme", "--yes"])
    assert done.exit_code == 0
    assert "deleted 1 records" in done.output
    assert runner.invoke(cli, ["get", url, "acme", "k"]).exit_code == 1
