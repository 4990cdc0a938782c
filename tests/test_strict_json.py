"""The strict JSON reader's integer bound (±2^53-1) holds with and without its fast path
(a document with no run of 16 digits is parsed without a hook per integer)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.canonical import MAX_SAFE_INT, loads
from vault.errors import InvalidInputError


def too_large(value: Any) -> bool:
    """The reference: any integer anywhere in ``value`` beyond ±(2^53 - 1)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) > MAX_SAFE_INT
    if isinstance(value, list):
        return any(too_large(v) for v in value)
    if isinstance(value, dict):
        return any(too_large(v) for v in value.values())
    return False


ints = st.one_of(
    st.integers(-(10**15), 10**15),
    st.integers(-(2**60), 2**60),
    st.sampled_from([MAX_SAFE_INT, MAX_SAFE_INT + 1, -MAX_SAFE_INT, -MAX_SAFE_INT - 1]),
)
docs = st.recursive(
    st.one_of(ints, st.text(alphabet="0123456789ab", max_size=20), st.booleans()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, derandomize=True)
@given(docs)
def test_the_bound_is_the_reference_s(doc: Any) -> None:
    text = json.dumps(doc)
    if too_large(doc):
        with pytest.raises(InvalidInputError, match="too large"):
            loads(text)
    else:
        assert loads(text) == doc


def test_a_string_of_digits_does_not_change_the_answer() -> None:
    assert loads('["12345678901234567890", 7]') == ["12345678901234567890", 7]
    with pytest.raises(InvalidInputError, match="too large"):
        loads('["12345678901234567890", 9007199254740992]')
