"""URLs and options the command line refuses as usage errors (exit 2, InvalidURLError,
nothing created): a tab, line break or '#' in a store path (dropped silently before:
the command used another store), an option value out of range (exit 3 before, where
docs/cli.md says 2 for a bad option), a path that is not UTF-8 (a raw encoding error
before, exit 3 or 70)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli

_USAGE = 2


def _refused(out: subprocess.CompletedProcess[bytes], *needles: str) -> None:
    assert out.returncode == _USAGE, out.stderr
    err = out.stderr.decode("utf-8", "replace")
    assert err.startswith("error: InvalidURLError:"), err
    assert err.count("\n") == 1
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("char", ["\t", "\n", "\r", "#"], ids=["tab", "lf", "cr", "hash"])
def test_a_character_the_parser_would_drop_is_refused(
    tmp_path: Path, scheme: str, char: str
) -> None:
    out = run_cli("put", f"{scheme}://{tmp_path}/a{char}b", "t", "k", "v")
    _refused(out, "percent-encoded")
    assert list(tmp_path.iterdir()) == []
    # Percent-encoded, the character is part of the name.
    encoded = "%" + format(ord(char), "02X")
    out = run_cli("put", "-q", f"{scheme}://{tmp_path}/a{encoded}b", "t", "k", "v")
    assert out.returncode == 0, out.stderr
    assert os.listdir(tmp_path) == [f"a{char}b"]


@pytest.mark.parametrize(
    "url",
    [
        "lmdb:{dir}/y?max_readers=0",
        "lmdb:{dir}/y?map_size=1",
        "rocksdb:{dir}/y?compression=nope",
    ],
)
def test_an_option_value_out_of_range_is_a_usage_error(tmp_path: Path, url: str) -> None:
    out = run_cli("put", url.format(dir=tmp_path), "t", "k", "v")
    _refused(out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("command", ["put", "get"])
def test_a_path_that_is_not_utf8_is_refused_naming_it(
    tmp_path: Path, scheme: str, command: str
) -> None:
    url = f"{scheme}://{tmp_path}/" + os.fsdecode(b"a\xff")
    out = run_cli(command, url, "t", "k", *(["v"] if command == "put" else []))
    _refused(out, "is not valid UTF-8", "\\xff")
    assert list(tmp_path.iterdir()) == []
