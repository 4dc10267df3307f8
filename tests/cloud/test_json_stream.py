"""StreamedArray: the items of a long array inside a JSON document as its bytes arrive, read
the same as ``json.loads`` reads the whole document, however the bytes are cut."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blelock.cloud.json_stream import NotJson, StreamedArray

PATH = ("data", "locks")

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
keys = st.text().filter(lambda key: key not in PATH)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """An envelope around a list at data.locks, its members in any order."""
    data = draw(st.dictionaries(keys, values, max_size=3))
    data["locks"] = draw(st.lists(values, max_size=30))
    top = draw(st.dictionaries(keys, values, max_size=3))
    top["data"] = data
    order = draw(st.permutations(list(top)))
    return {key: top[key] for key in order}


def dumped(document: Any, draw: st.DrawFn) -> bytes:
    compact = draw(st.booleans())
    text = json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        indent=None if compact else draw(st.sampled_from([None, 0, 2, "\t"])),
        separators=(",", ":") if compact else None,
    )
    return (text + draw(st.sampled_from(["", "\n", " \r\n "]))).encode()


def cut(body: bytes, draw: st.DrawFn) -> list[bytes]:
    """``body`` in pieces, cut anywhere (inside a number, a string, a UTF-8 character)."""
    points = sorted(draw(st.lists(st.integers(0, len(body)), max_size=12)))
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def read(pieces: list[bytes], path: tuple[str, ...] = PATH) -> tuple[list[Any], Any]:
    reader = StreamedArray(path)
    items: list[Any] = []
    for piece in pieces:
        items += reader.feed(piece)
    last, rest = reader.close()
    return items + last, rest


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_document_cut_anywhere_reads_as_json_loads_reads_it(data: st.DataObject) -> None:
    document = data.draw(documents())
    body = dumped(document, data.draw)
    items, rest = read(cut(body, data.draw))
    whole = json.loads(body)
    assert items == whole["data"]["locks"]
    whole["data"]["locks"] = []
    assert rest == whole


def split(document: Any) -> tuple[list[Any], Any]:
    """What the reader should give for ``document``: the items at data.locks and the rest,
    or, where there is no array there, nothing streamed and the document whole."""
    data = document.get("data") if isinstance(document, dict) else None
    if not (isinstance(data, dict) and isinstance(data.get("locks"), list)):
        return [], document
    return data["locks"], document | {"data": data | {"locks": []}}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_json_value_reads_as_json_loads_reads_it(data: st.DataObject) -> None:
    """Documents without the array (null data, a list, a scalar) as well as with it."""
    document = data.draw(values | documents())
    body = dumped(document, data.draw)
    assert read(cut(body, data.draw)) == split(json.loads(body))


def test_items_come_out_as_their_bytes_arrive() -> None:
    reader = StreamedArray(PATH)
    assert reader.feed(b'{"result": "success", "data": {"locks": [{"mac": "A"}, {"ma') == [
        {"mac": "A"}
    ]
    assert reader.feed(b'c": "B"}, 12') == [{"mac": "B"}]
    # A number at the very end may go on: it waits for what follows.
    assert reader.feed(b"3") == []
    assert reader.feed(b"]}}") == [123]
    assert reader.close() == ([], {"result": "success", "data": {"locks": []}})


@pytest.mark.parametrize("cut_at", range(1, len("-1.8632109696507532e+16")))
def test_a_number_cut_anywhere_is_read_whole(cut_at: int) -> None:
    body = b'{"data": {"locks": [-1.8632109696507532e+16]}}'
    start = body.index(b"-")
    pieces = [body[: start + cut_at], body[start + cut_at :]]
    assert read(pieces) == ([-1.8632109696507532e16], {"data": {"locks": []}})


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ([b'{"data": {"locks": [{"mac": "D0'], "unterminated string"),
        ([b'{"data": {"locks": [1, 2'], "ends early"),
        ([b"<html>502 Bad Gateway</html>"], "expecting value"),
        ([b'{"data": {"locks": [1 2]}}'], "expected ',' or ']'"),
        ([b'{"data": {"locks": []} "x": 1}'], "expected ',' or '}'"),
        ([b'{"data": {"locks": []}} trailing'], "more after the document"),
        ([b'{"data": {"locks": [], 5: 1}}'], "expected an object key"),
        ([b'{"data"', b" 1}"], "expected ':'"),
        ([b'{"data": {"locks": ["\xff"]}}'], "not UTF-8"),
        ([b""], "ends early"),
    ],
)
def test_what_is_not_the_json_document_is_refused(pieces: list[bytes], reason: str) -> None:
    with pytest.raises(NotJson, match=reason):
        read(pieces)


def test_a_value_longer_than_the_limit_is_refused_before_it_ends() -> None:
    reader = StreamedArray(PATH, longest=1000)
    reader.feed(b'{"message": "')  # the member's 12 characters, then 100 a piece
    for _ in range(9):
        assert reader.feed(b"x" * 100) == []
    with pytest.raises(NotJson, match="longer than 1000 characters"):
        reader.feed(b"x" * 100)


def test_a_long_value_is_not_read_again_for_every_piece_of_it() -> None:
    """A value cut short is tried again once as much again has arrived: a value of n pieces
    costs a few reads of it, not n."""
    reader = StreamedArray(PATH)
    tries = 0
    real = reader._value

    def counting() -> Any:
        nonlocal tries
        tries += 1
        return real()

    reader._value = counting  # type: ignore[method-assign]
    reader.feed(b'{"message": "')
    for _ in range(1000):
        reader.feed(b"x" * 100)
    reader.feed(b'", "data": {"locks": [1]}}')
    assert reader.close() == ([1], {"message": "x" * 100_000, "data": {"locks": []}})
    assert tries < 40, tries
