"""Service logging: one line per event, as text or JSON, each carrying the lock and job it is
about (taken from a context variable, so code deep in a visit need not pass them along).

Nothing here formats settings or requests: what reaches a log line is an event name, ids, and
BlelockError text, which the error tree keeps free of keys and tokens.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Literal

__all__ = ["configure_logging", "log_context", "logger"]

logger = logging.getLogger("blelock.service")

_CONTEXT: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "blelock_service_log_context", default=()
)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
"""Not extra fields: the record's own attributes, and uvicorn's ANSI-coloured copy of the text."""


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Every line logged inside (in this task and the tasks it starts) carries ``fields``."""
    token = _CONTEXT.set((*_CONTEXT.get(), *fields.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    return dict(_CONTEXT.get()) | extra


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pairs = " ".join(f"{k}={_quoted(v)}" for k, v in _fields(record).items())
        text = f"{when} {record.levelname.lower():<7} {record.getMessage()}"
        text = f"{text} {pairs}" if pairs else text
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def _quoted(value: object) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or " " in text or "=" in text else text


def configure_logging(fmt: Literal["text", "json"], level: int = logging.INFO) -> None:
    """Service lines (and uvicorn's own) to stderr, where systemd's journal picks them up.
    uvicorn's access log stays off: it would add a line per poll of /health and nothing more."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines() if fmt == "json" else _Text())
    for name in ("blelock", "uvicorn", "uvicorn.error"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.setLevel(level)
        named.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
