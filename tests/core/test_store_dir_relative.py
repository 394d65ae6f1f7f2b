"""``create_store_dir`` on relative paths: the documented plugin URL form
``mykv:relative/path`` reaches it through ``local_path`` unchanged (no ``abspath``, as
docs/extending/writing-a-backend.md's skeleton does), so a relative path must work as
it does for the built-in engines - it once walked up to ``""`` and called
``mkdir("")``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.backend import create_store_dir, plan_store_dir, remove_created
from aurora_storage.config import URL, local_path

_NAME = st.sampled_from(["a", "b", "store", "x y", "ü"])


@st.composite
def relative_paths(draw: st.DrawFn) -> str:
    """Relative path shapes: one or more names, a leading ``./``, ``.`` or ``..`` after
    a name, a trailing slash."""
    parts = draw(st.lists(_NAME, min_size=1, max_size=4))
    if draw(st.booleans()):
        at = draw(st.integers(1, len(parts)))
        parts.insert(at, draw(st.sampled_from([".", ".."])) if at < len(parts) else ".")
    text = "/".join(parts)
    if draw(st.booleans()):
        text = "./" + text
    if draw(st.booleans()):
        text += "/"
    return text


@contextmanager
def working_directory() -> Iterator[str]:
    """A fresh empty working directory for one example (the process's cwd is restored)."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as cwd:
        os.chdir(cwd)
        try:
            yield cwd
        finally:
            os.chdir(before)


def _tree(root: str) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), root)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
    }


@given(relative_paths(), st.booleans())
def test_create_store_dir_makes_any_relative_path_and_remove_undoes_it(
    path: str, exists_partly: bool
) -> None:
    with working_directory() as cwd:
        if exists_partly:
            # Part of the path exists already: only the rest is created (and removed).
            first = path.removeprefix("./").split("/")[0]
            if first not in (".", ".."):
                os.mkdir(first)
        before = _tree(cwd)
        planned = plan_store_dir(path, backend="x")
        assert "" not in planned
        created = create_store_dir(path, backend="x")
        assert os.path.isdir(path)
        # A spelling such as a/../a plans a/../a after a: the same directory, there
        # by then, and not returned (as one another process made meanwhile).
        assert set(created) <= set(planned)
        # What it says it created is exactly what appeared.
        assert {os.path.relpath(os.path.abspath(d), cwd) for d in created} == (_tree(cwd) - before)
        assert create_store_dir(path, backend="x") == []  # there now: nothing to create
        remove_created(created)
        assert _tree(cwd) == before


@pytest.mark.parametrize("text", ["plainrel", "rel/store", "deep/er/store/"])
def test_the_documented_relative_url_form_opens_through_the_helper(text: str) -> None:
    """``mykv:relative/path`` through ``local_path`` then ``create_store_dir``, as the
    skeleton of docs/extending/writing-a-backend.md does, the way ``rocksdb:relr``
    opens relative to the working directory."""
    with working_directory() as cwd:
        path = local_path(URL.parse(f"mykv:{text}"), backend="mykv")
        assert path == text
        created = create_store_dir(path, backend="mykv")
        assert os.path.isdir(os.path.join(cwd, text))
        assert created
        assert not os.path.isabs(created[0])
        with aurora_storage.open(f"rocksdb:{text}rocks") as repo:  # the built-in, alike
            repo.put("t", "k", 1)
        assert os.path.isdir(os.path.join(cwd, f"{text}rocks"))
