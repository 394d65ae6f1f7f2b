"""Every command through the real entry point in a subprocess: output forms, key and
value syntax, exit codes, closed pipes, broken plugins."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.cli._tagged import from_tagged, to_tagged

from .conftest import command, run_cli


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"rocksdb://{tmp_path / 'store'}"
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", ((("order", i), {"n": i}) for i in range(1, 13)))
        repo.put("acme", "greeting", "hello")
        repo.put("acme", b"\x00\xff", b"raw".decode())
        repo.put("acme-corp", "other", 1)
    return url


def test_backends_lists_schemes_and_a_broken_plugin_with_why(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aurora_storage]\nbroken = no_such_module_xyz\n")
    result = run_cli("backends", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 6, result.stderr  # ExitCode.BROKEN_PLUGIN
    rows = {r["scheme"]: r for r in orjson.loads(result.stdout)}
    assert {"memory", "rocksdb", "lmdb", "tiered"} <= rows.keys()
    assert rows["rocksdb"]["status"] == "ok"
    assert rows["broken"]["status"] == "broken"
    assert "no_such_module_xyz" in rows["broken"]["error"]
    assert rows["broken"]["package"] == "broken-plugin"
    text = run_cli("backends", env={"PYTHONPATH": str(site)})
    assert text.returncode == 6
    assert b"broken\tbroken\tthe plugin for scheme 'broken' (distribution broken-plugin)" in (
        text.stdout
    )
    assert b"ModuleNotFoundError" in text.stdout


def test_info_and_stats_as_json_and_text(store: str) -> None:
    result = run_cli("info", store, "--tenants", "--json")
    assert result.returncode == 0, result.stderr
    doc = orjson.loads(result.stdout)
    assert doc["codec"] == "json"
    assert doc["capabilities"]["read_only"] is True  # opened read-only
    assert doc["tenants"] == {"acme": 14, "acme-corp": 1}
    assert "rocksdb.estimate-pending-compaction-bytes" in doc["stats"]["properties"]
    text = run_cli("stats", store)
    assert text.returncode == 0
    assert b"stats.properties.rocksdb.num-files-at-level0\t" in text.stdout


def test_tenants_with_counts(store: str) -> None:
    assert run_cli("tenants", store).stdout == b"acme\nacme-corp\n"
    assert run_cli("tenants", store, "--counts").stdout == b"acme\t14\nacme-corp\t1\n"
    lines = run_cli("tenants", store, "--counts", "--json").stdout.splitlines()
    assert [orjson.loads(x) for x in lines] == [
        {"tenant": "acme", "count": 14},
        {"tenant": "acme-corp", "count": 1},
    ]


def test_keys_with_prefix_start_stop_reverse_limit(store: str) -> None:
    def keys(*args: str) -> list[object]:
        result = run_cli("keys", store, "acme", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [orjson.loads(x) for x in result.stdout.splitlines()]

    assert keys("--prefix", '["order"]', "--key-json", "--limit", "3") == [
        ["order", 1],
        ["order", 2],
        ["order", 3],
    ]
    assert keys("--start", '["order", 10]', "--stop", '["order", 12]', "--key-json") == [
        ["order", 10],
        ["order", 11],
    ]
    assert keys("--reverse", "--limit", "2") == [["order", 12], ["order", 11]]
    # Text output: str keys as they are, others as tagged JSON one can feed back.
    text = run_cli("keys", store, "acme", "--limit", "3").stdout.splitlines()
    assert text == [b"greeting", b'{"$bytes":"AP8="}', b'["order",1]']


def test_items_stream_json_lines(store: str) -> None:
    result = run_cli("items", store, "acme", "--prefix", "order", "--limit", "2")
    assert result.returncode == 0
    assert result.stdout == b""  # the text key "order" is not a prefix of ("order", n)
    result = run_cli("items", store, "acme", "--prefix", '["order"]', "-K", "json", "--limit", "2")
    assert [orjson.loads(x) for x in result.stdout.splitlines()] == [
        {"key": ["order", 1], "value": {"n": 1}},
        {"key": ["order", 2], "value": {"n": 2}},
    ]


def test_put_get_delete_count_with_explicit_syntax(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 's'}"
    assert run_cli("put", url, "acme", "1e3", "1e3").returncode == 0
    # Text by default: neither the key nor the value is guessed to be a number.
    assert run_cli("get", url, "acme", "1e3").stdout == b'"1e3"\n'
    assert run_cli("get", url, "acme", "1e3", "--raw").stdout == b"1e3\n"
    assert run_cli("get", url, "acme", "1000", "-K", "int").returncode == 1
    assert run_cli("put", url, "acme", "1000", "1e3", "-K", "int", "--value-json").returncode == 0
    assert run_cli("get", url, "acme", "1000", "-K", "int").stdout == b"1000.0\n"
    # Bytes keys: hex, base64 or tagged JSON name the same record.
    assert run_cli("put", url, "acme", "00ff", "x", "-K", "hex").returncode == 0
    assert run_cli("get", url, "acme", "AP8=", "-K", "base64").stdout == b'"x"\n'
    assert run_cli("get", url, "acme", '{"$bytes": "AP8="}', "--key-json").stdout == b'"x"\n'
    count = run_cli("count", url, "acme", "--json")
    assert orjson.loads(count.stdout) == {"tenant": "acme", "count": 3}
    assert run_cli("delete", url, "acme", "00ff", "-K", "hex").returncode == 0
    missing = run_cli("delete", url, "acme", "00ff", "-K", "hex")
    assert missing.returncode == 1
    assert b"not found" in missing.stderr
    assert run_cli("count", url, "acme").stdout == b"2\n"


@pytest.mark.parametrize(
    "args",
    [
        ["get", "{url}", "acme", "[1,", "--key-json"],
        ["get", "{url}", "acme", "xyz", "-K", "hex"],
        ["get", "{url}", "acme", "x", "-K", "nope"],
        ["put", "{url}", "acme", "k", "[bad", "--value-json"],
        ["keys", "{url}", "acme", "--limit", "-1"],
        ["info", "nosuch:///x"],
        ["info", "memory://?bogus=1"],
        ["nosuchcommand"],
    ],
    ids=lambda a: "-".join(a[:1] + a[3:4]),
)
def test_usage_errors_exit_2_with_one_line(store: str, args: list[str]) -> None:
    result = run_cli(*(a.format(url=store) for a in args))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""


def test_unknown_scheme_and_bad_option_name_the_fix(store: str) -> None:
    scheme = run_cli("info", "nosuch:///x").stderr.decode()
    assert scheme.startswith("error: BackendNotFoundError:")
    assert "memory" in scheme  # names the installed schemes
    option = run_cli("info", "memory://?bogus=1").stderr.decode()
    assert "InvalidURLError" in option
    assert "bogus" in option


def test_long_error_messages_are_not_wrapped_when_piped(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90) / "store"
    result = run_cli("info", f"lmdb://{deep}")
    assert result.returncode == 4
    assert result.stderr.count(b"\n") == 1
    assert str(deep).encode() in result.stderr


def test_a_closed_pipe_ends_quietly_with_status_0(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 's'}"
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", ((i, "x" * 100) for i in range(50_000)))
    with subprocess.Popen(
        [*command(), "items", url, "acme"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    assert err == b""


def test_drop_tenant_asks_and_needs_yes_without_a_terminal(store: str) -> None:
    refused = run_cli("drop-tenant", store, "acme")
    assert refused.returncode == 2
    assert b"--yes" in refused.stderr
    assert run_cli("count", store, "acme").stdout == b"14\n"
    done = run_cli("drop-tenant", store, "acme", "--yes")
    assert done.returncode == 0, done.stderr
    assert b"deleted 14 records" in done.stdout
    assert run_cli("count", store, "acme").stdout == b"0\n"
    assert run_cli("count", store, "acme-corp").stdout == b"1\n"


def test_compact_rocksdb_and_refusal_on_lmdb(store: str, tmp_path: Path) -> None:
    done = run_cli("compact", store)
    assert done.returncode == 0, done.stderr
    assert run_cli("count", store, "acme").stdout == b"14\n"
    url = f"lmdb://{tmp_path / 'l'}"
    run_cli("put", url, "acme", "k", "v")
    refused = run_cli("compact", url)
    assert refused.returncode == 3
    assert b"NotSupportedError" in refused.stderr


def test_tiered_status_catch_up_rebuild(tmp_path: Path) -> None:
    hot = quote(f"lmdb://{tmp_path / 'hot'}", safe="")
    cold = quote(f"rocksdb://{tmp_path / 'cold'}", safe="")
    url = f"tiered://?hot={hot}&cold={cold}"
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", ((f"k{i}", i) for i in range(100)))
    status = run_cli("tiered", "status", url, "--json")
    assert status.returncode == 0, status.stderr
    doc = orjson.loads(status.stdout)
    assert doc["backend"] == "tiered"
    caught = run_cli("tiered", "catch-up", url)
    assert caught.returncode == 0, caught.stderr
    rebuilt = run_cli("tiered", "rebuild", url, "--yes")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert b"rebuilt" in rebuilt.stderr
    with aurora_storage.open(url) as repo:
        assert repo.count("acme") == 100
    not_tiered = run_cli("tiered", "status", f"rocksdb://{tmp_path / 'cold'}")
    assert not_tiered.returncode == 2


def test_demo_runs() -> None:
    result = run_cli("demo", "--events", "200")
    assert result.returncode == 0, result.stderr


_json_keys = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(_json_keys)
def test_tagged_json_round_trips_every_key_shape(key: object) -> None:
    text = orjson.dumps(to_tagged(key))
    back = from_tagged(orjson.loads(text), as_key=True)
    assert back == key
    assert aurora_storage.encode_key(back) == aurora_storage.encode_key(key)
