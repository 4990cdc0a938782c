"""The strict JSON reader's integer bound (±2^53-1) holds with and without its fast path
(a document with no run of 16 digits is parsed without a hook per integer)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.canonical import MAX_DEPTH, MAX_SAFE_INT, loads
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


# --------------------------------------------------------------------------- located refusals
MARK = "@"  # marks, in a case, where the refused token starts (removed before parsing)
FINITE = "expected a finite number"
DUPLICATE = "expected each key once in an object"
SAFE = f"expected at most ±{MAX_SAFE_INT}"

# (id, text with MARK before the refused token, the message up to its location, field)
LOCATED: list[tuple[str, str, str, str | None]] = [
    ("duplicate-key", '{"a": 1, "b": [2], @"a": 3}', f"duplicate key 'a', {DUPLICATE}", None),
    (
        "duplicate-key-nested",
        '{"k": 0, "x": {"k": 1, "j": {"k": 0}, @"k": 2}}',
        f"duplicate key 'k', {DUPLICATE}",
        None,
    ),
    ("nan", '{"a": [1, @NaN]}', f"NaN is not allowed, {FINITE}", None),
    ("infinity", "[1, 2, @Infinity]", f"Infinity is not allowed, {FINITE}", None),
    ("minus-infinity", '{"a": 0, "b": @-Infinity}', f"-Infinity is not allowed, {FINITE}", None),
    (
        "too-large",
        '{"n": [[1, 2], [3, @9007199254740992]]}',
        f"integer 9007199254740992 is too large, {SAFE}",
        None,
    ),
    (
        "too-small",
        "[0, @-9007199254740992]",
        f"integer -9007199254740992 is too large, {SAFE}",
        None,
    ),
    (
        "digit-limit",
        "[1, @" + "9" * 5000 + "]",
        f"integer {'9' * 30}... is too large, {SAFE}",
        None,
    ),
    ("overflow", '{"f": 0.5, "g": @1e400}', f"number 1e400 is out of range, {FINITE}", None),
    ("overflow-negative", "[0.5, @-2.5E+308]", f"number -2.5E+308 is out of range, {FINITE}", None),
    (
        "nesting",  # '{' and 511 '[' are 512 levels: the next '[' is one too many
        '{"e": 0, "d": ' + "[" * 511 + "@[[]" + "]" * 512 + "}",
        f"nested deeper than {MAX_DEPTH} levels, expected at most {MAX_DEPTH}",
        None,
    ),
    (
        "nesting-unclosed",  # (Python's parser gives up first: RecursionError)
        "[0, " + "[" * (MAX_DEPTH - 1) + "@[" + "[" * 3000,
        f"nested deeper than {MAX_DEPTH} levels, expected at most {MAX_DEPTH}",
        None,
    ),
    (
        "lone-surrogate",
        r'{"ok": "\ud83d\ude00", "s": [0, @"\ud800"]}',
        r"\ud800 is a lone surrogate, not a Unicode character, expected a pair "
        r"(\ud800-\udbff, then \udc00-\udfff)",
        "s[1]",
    ),
]


def located(text: str) -> tuple[str, int, int]:
    """(``text`` without its MARK, the line and the column of the MARK, 1-based)."""
    at = text.index(MARK)
    line = text.count("\n", 0, at) + 1
    return text.replace(MARK, "", 1), line, at - text.rfind("\n", 0, at)


def as_document(case: str) -> str:
    """``case`` as a multi-line document (a line break after each comma)."""
    return case.replace(", ", ",\n  ")


def message(source: str, what: str, field: str | None, line: int, column: int) -> str:
    where = f"field '{field}': " if field else ""
    return f"{source}: {where}invalid JSON: {what} (line {line}, column {column})"


@pytest.mark.parametrize(("name", "case", "what", "field"), LOCATED, ids=[c[0] for c in LOCATED])
def test_a_refusal_in_a_document_names_its_line_and_column(
    name: str, case: str, what: str, field: str | None
) -> None:
    """Duplicate keys, NaN/Infinity, out-of-range numbers, deep nesting and lone surrogates
    are refused with the line and column of the token (they used to name neither)."""
    text, line, column = located(as_document(case))
    assert line > 1 and column > 1
    with pytest.raises(InvalidInputError) as exc:
        loads(text, source="in.json")
    assert str(exc.value) == message("in.json", what, field, line, column)
    with pytest.raises(InvalidInputError) as exc:  # the same from bytes
        loads(text.encode(), source="in.json")
    assert str(exc.value) == message("in.json", what, field, line, column)


@pytest.mark.parametrize(("name", "case", "what", "field"), LOCATED, ids=[c[0] for c in LOCATED])
def test_a_refusal_in_a_json_line_names_the_file_line_and_column(
    name: str, case: str, what: str, field: str | None
) -> None:
    """A JSON line parsed as line 7 of its file is located in the file."""
    text, _, column = located(case)
    with pytest.raises(InvalidInputError) as exc:
        loads("   " + text, source="in.jsonl:7", line=7)
    assert str(exc.value) == message("in.jsonl:7", what, field, 7, column + 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{\n  "a": 1,\n  "a": 2\n}',
            "duplicate key 'a', expected each key once in an object (line 3, column 3)",
        ),
        ("[1,\n NaN]", "NaN is not allowed, expected a finite number (line 2, column 2)"),
        (
            "[[1, 2],\n\n  [3, -Infinity]]",
            "-Infinity is not allowed, expected a finite number (line 3, column 7)",
        ),
        (
            "[0,\n 1e400]",
            "number 1e400 is out of range, expected a finite number (line 2, column 2)",
        ),
        (
            '{"a":\n  {"b": [1, 2, 9007199254740993]}}',
            "integer 9007199254740993 is too large, "
            f"expected at most ±{MAX_SAFE_INT} (line 2, column 16)",
        ),
        (
            "[" * 3000,
            f"nested deeper than {MAX_DEPTH} levels, expected at most {MAX_DEPTH} "
            f"(line 1, column {MAX_DEPTH + 1})",
        ),
    ],
)
def test_locations_by_hand(text: str, expected: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        loads(text, source="f.json")
    assert str(exc.value) == f"f.json: invalid JSON: {expected}"


def test_a_syntax_error_in_a_json_line_names_the_file_line() -> None:
    with pytest.raises(InvalidInputError) as exc:
        loads('{"a": [1, }', source="f.jsonl:5", line=5)
    assert str(exc.value) == "f.jsonl:5: malformed JSON: Expecting value (line 5, column 11)"


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (
            "{\n",
            None,
            "unexpected end of input (line 1, column 2), expecting property name "
            "enclosed in double quotes",
        ),
        (
            '{"a": [1,\n\n  2,\n\n',
            None,
            "unexpected end of input (line 3, column 5), expecting value",
        ),
        ("[1", None, "unexpected end of input (line 1, column 3), expecting ',' delimiter"),
        ("\n \n", None, "empty input, expected a JSON value"),
        ('{"grid": [[1,2],\n', 7, "unexpected end of line (line 7, column 17), expecting value"),
    ],
)
def test_a_text_cut_short_is_named_at_its_last_character(
    text: str, line: int | None, expected: str
) -> None:
    """Python's parser stops at the very end (after the trailing newline: the next line, a
    line the file does not have); the error names the end and the place after the last
    character instead."""
    with pytest.raises(InvalidInputError) as exc:
        loads(text, source="f", line=line)
    assert str(exc.value) == f"f: malformed JSON: {expected}"


def test_nesting_is_bounded_at_max_depth_whatever_the_parser_allows() -> None:
    """MAX_DEPTH levels parse; one more is refused, cleanly, whether Python's parser would
    have taken it (600) or given up (3,000, 100,000: never a RecursionError)."""
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert loads('{"a": ' * (MAX_DEPTH - 1) + "[]" + "}" * (MAX_DEPTH - 1)) is not None
    for depth in (MAX_DEPTH + 1, 600, 3000, 100_000):
        for text in ("[" * depth + "]" * depth, "[" * depth):
            with pytest.raises(InvalidInputError, match=f"nested deeper than {MAX_DEPTH}"):
                loads(text)


def test_brackets_in_strings_do_not_count_as_nesting() -> None:
    deep_string = "[" * 2000 + '\\"{' * 700
    assert loads(f'["{deep_string}", ["]]]"]]') == [deep_string.replace('\\"', '"'), ["]]]"]]
