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


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (r'{"repr": [[1]], "id": "\ud800"}', "field 'id'"),
        (r'{"repr": [[1]], "\udfff": 1}', "field '\\udfff'"),
        (r'{"task": {"train": [{"input": [[1]], "note": "a\uDC00"}]}}', "'task.train[0].note'"),
        (r'["\ud83d"]', "field '[0]'"),
        (r'"\ude00"', "in.json: invalid JSON"),
    ],
)
def test_a_lone_surrogate_is_refused_with_its_field(text: str, field: str) -> None:
    """A lone surrogate is no Unicode character: no UTF-8 output could hold it (it used to
    pass here and crash whatever wrote it: `retrieve --batch`, `add`)."""
    with pytest.raises(InvalidInputError, match="lone surrogate") as exc:
        loads(text, source="in.json")
    assert str(exc.value).startswith("in.json: ") and field in str(exc.value)
    str(exc.value).encode("utf-8")  # the message itself can be printed


def test_a_surrogate_pair_and_an_escaped_backslash_are_not_lone() -> None:
    assert loads(r'{"\ud83d\ude00": "\\ud800"}') == {"\U0001f600": "\\ud800"}
