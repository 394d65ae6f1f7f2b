"""A value a codec refuses leaves no reference cycle behind.

The json codec re-raised orjson's own error ``from`` itself when ``_json_default`` gave
no reason of its own (bytes, a set, an object): the error became its own ``__cause__``,
a cycle through its traceback that kept every frame of the failing call alive until the
garbage collector ran. The eventsourcing module probes the codec with bytes when a
factory is built, so every eventsourcing ``Application`` on a json store stayed alive
until a collection - at interpreter exit, after its modules were torn down, its
``__del__`` printed "TypeError: 'NoneType' object is not callable". Now the error is
raised as it is, and the caller's frames are freed as soon as it is handled.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aurora_storage.codecs import available_codecs, get_codec

#: Values some codec refuses (each codec refuses a different part of them).
REFUSED = st.one_of(
    st.binary(max_size=4).map(lambda b: [b]),
    st.sets(st.integers(), max_size=2),
    st.just(object()),
    st.integers(min_value=2**64, max_value=2**70).map(lambda i: {"n": i}),
    st.text(max_size=3).map(lambda t: t + "\ud800"),
    st.just({(1, 2): 3}),
    st.just(complex(1, 2)),
)


@pytest.fixture
def no_collection() -> Iterator[None]:
    """Only reference counting frees objects while a test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Marker:
    pass


def _refused_in_a_frame(codec: str, value: Any) -> tuple[weakref.ref[_Marker], Any]:
    """Encode ``value`` in a frame holding a marker; the refusal (or None), and a
    weak reference to the marker, which lives on only if the frame does."""
    marker = _Marker()
    ref = weakref.ref(marker)
    try:
        get_codec(codec).encode(value)
    except Exception as exc:
        return ref, (type(exc), exc.__cause__ is exc)
    return ref, None


@pytest.mark.parametrize("codec", available_codecs())
@given(value=REFUSED)
def test_a_refused_value_frees_the_frames_of_the_call(codec: str, value: Any) -> None:
    gc.disable()
    try:
        ref, refusal = _refused_in_a_frame(codec, value)
        if refusal is not None:
            assert refusal[1] is False, "the error is its own cause"
        assert ref() is None, "the failing call's frame outlived it (a reference cycle)"
    finally:
        gc.enable()


def test_the_json_refusal_of_bytes_names_the_type(no_collection: None) -> None:
    with pytest.raises(TypeError, match="bytes") as info:
        get_codec("json").encode([b"x"])
    assert info.value.__cause__ is not info.value
