"""The items of one array inside a JSON document, read as the document's bytes arrive.

A cloud's listing of a whole fleet that the vendor documents without paging (~300 bytes a
lock) is read this way, so that neither the answer nor its entries are ever held whole. ijson
does this job too, but hands every token to Python as an event (~25 a lock): 0.9-1.6 s for
100,000 locks (30 MB) on a 2-core VM, where the standard library's scanner, decoding each item
whole, takes 0.33 s (``scripts/bench/sync.py`` measures the whole sync).
Only the objects on the way to the array are walked here; every key and value, items included,
is decoded by ``json``'s own scanner. Sans-I/O: bytes in, items out.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["NotJson", "StreamedArray"]

_SPACE = re.compile(r"[ \t\n\r]*")
_AFTER_A_VALUE = frozenset(" \t\n\r,]}")
_decode = json.JSONDecoder().raw_decode


class NotJson(ValueError):
    """The bytes are not the JSON document they were read as (at ``position``, a character
    offset into the document)."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} at character {position}")
        self.position = position


class _NeedMore(Exception):
    """The text ends inside the step being read: wait for more of it."""


class StreamedArray:
    """Read a JSON document whose array at ``path`` (keys from the top, e.g. ``("data",
    "locks")``) may be as long as it likes: :meth:`feed` returns the array's items that each
    piece of bytes completes, :meth:`close` the rest of the document, the array in it empty.
    Where the document has no array at ``path`` (an error answer whose ``data`` is null, or
    no object at all), nothing is streamed: :meth:`close` returns the document as it is.

    Every other value is read whole; one longer than ``longest`` characters is refused, so a
    reader of something that is not the document expected never holds more than that."""

    def __init__(self, path: Sequence[str], *, longest: int = 1 << 20) -> None:
        if not path:
            raise ValueError("a streamed array needs a path of at least one key")
        self._path = tuple(path)
        self._longest = longest
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._at = 0
        self._consumed = 0  # characters dropped from the front of _text, for error positions
        self._complete = False
        self._retry_length = 0  # a value cut short is read again once _text is this long
        self._objects: list[dict[str, Any]] = []  # the objects on the path being walked
        self._document: Any = None
        self._step: Callable[[list[Any]], None] = self._document_start

    def feed(self, data: bytes) -> list[Any]:
        """The items that ``data`` completes (raises :class:`NotJson`)."""
        self._add(data, final=False)
        return self._run()

    def close(self) -> tuple[list[Any], Any]:
        """The last items, and the document without them: call once the bytes have ended.
        Raises :class:`NotJson` if they ended before the document did."""
        self._add(b"", final=True)
        self._complete = True
        return self._run(), self._document

    def _add(self, data: bytes, *, final: bool) -> None:
        try:
            self._text += self._utf8.decode(data, final)
        except UnicodeDecodeError:
            raise NotJson("bytes that are not UTF-8", self._consumed + len(self._text)) from None

    # --- the walk: each step reads all it needs, or nothing -----------------------------------

    def _run(self) -> list[Any]:
        if not self._complete and len(self._text) < self._retry_length:
            return []  # a long value still arriving: not read again for every piece of it
        self._retry_length = 0
        items: list[Any] = []
        try:
            while self._step != self._after_document:
                if self._at >= len(self._text) and not self._complete:
                    break
                start = self._at
                try:
                    self._step(items)
                except _NeedMore:
                    self._at = start
                    waiting = len(self._text) - start
                    if self._complete:
                        raise NotJson("the document ends early", self._consumed + start) from None
                    if waiting > self._longest:
                        raise NotJson(
                            f"a value longer than {self._longest} characters, or not JSON",
                            self._consumed + start,
                        ) from None
                    # Of _text once trimmed: linear overall, and never past the limit unseen.
                    self._retry_length = min(2 * waiting, self._longest + 1)
                    break
            else:
                self._after_document(items)
        finally:
            self._text, self._consumed = self._text[self._at :], self._consumed + self._at
            self._at = 0
        return items

    def _skip_space(self) -> str:
        """The next character after whitespace (_NeedMore at the end of the text)."""
        self._at = _SPACE.match(self._text, self._at).end()  # type: ignore[union-attr]
        if self._at >= len(self._text):
            raise _NeedMore
        return self._text[self._at]

    def _expect(self, char: str) -> None:
        if self._skip_space() != char:
            raise NotJson(f"expected {char!r}", self._consumed + self._at)
        self._at += 1

    def _value(self) -> Any:
        """One whole value. One that does not parse may only be cut short, and a number not yet
        followed by what ends a value may go on: until the bytes have ended, both wait."""
        self._skip_space()
        try:
            value, end = _decode(self._text, self._at)
        except json.JSONDecodeError as exc:
            if not self._complete:
                raise _NeedMore from None
            raise NotJson(exc.msg.lower(), self._consumed + exc.pos) from None
        if (
            type(value) in (int, float)
            and not self._complete
            and (end >= len(self._text) or self._text[end] not in _AFTER_A_VALUE)
        ):
            raise _NeedMore  # "1.5e" then "+3": only what ends a value ends a number
        self._at = end
        return value

    def _document_start(self, items: list[Any]) -> None:
        if self._skip_space() != "{":  # JSON, but not an object: nothing to stream
            self._document = self._value()
            self._step = self._after_document
            return
        self._at += 1
        self._document = {}
        self._objects = [self._document]
        self._step = self._first_member

    def _first_member(self, items: list[Any]) -> None:
        if self._skip_space() == "}":
            self._at += 1
            self._leave_object()
        else:
            self._member()

    def _next_member(self, items: list[Any]) -> None:
        char = self._skip_space()
        self._at += 1
        if char == "}":
            self._leave_object()
        elif char == ",":
            self._member()
        else:
            raise NotJson("expected ',' or '}'", self._consumed + self._at - 1)

    def _member(self) -> None:
        key = self._value()
        if not isinstance(key, str):
            raise NotJson("expected an object key", self._consumed + self._at)
        self._expect(":")
        depth = len(self._objects)  # the path's objects walked so far: 1 at the top
        on_path = key == self._path[depth - 1]
        opening = self._skip_space()
        inner = self._objects[-1]
        if on_path and depth < len(self._path) and opening == "{":
            self._at += 1
            inner[key] = {}
            self._objects.append(inner[key])
            self._step = self._first_member
        elif on_path and depth == len(self._path) and opening == "[":
            self._at += 1
            inner[key] = []
            self._step = self._first_item
        else:
            inner[key] = self._value()
            self._step = self._next_member

    def _leave_object(self) -> None:
        self._objects.pop()
        self._step = self._next_member if self._objects else self._after_document

    def _first_item(self, items: list[Any]) -> None:
        if self._skip_space() == "]":
            self._at += 1
            self._step = self._next_member
        else:
            items.append(self._value())
            self._step = self._next_item

    def _next_item(self, items: list[Any]) -> None:
        char = self._skip_space()
        self._at += 1
        if char == "]":
            self._step = self._next_member
        elif char == ",":
            items.append(self._value())
        else:
            raise NotJson("expected ',' or ']'", self._consumed + self._at - 1)

    def _after_document(self, items: list[Any]) -> None:
        self._at = _SPACE.match(self._text, self._at).end()  # type: ignore[union-attr]
        if self._at < len(self._text):
            raise NotJson("more after the document", self._consumed + self._at)
