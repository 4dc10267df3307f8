"""What every route of the simulated Nokē Core API shares: the envelope every answer wears,
API-level refusals, the body fields and dates as the vendor document describes them
(noke.md §9), and parsing a body against a route's schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json
from starlette.responses import JSONResponse

__all__ = ["Hex40", "Mac"]

_MAC = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
_HEX40 = r"^[0-9A-Fa-f]{40}$"
_OK_MESSAGE = "Command successfully completed"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


_SchemaT = TypeVar("_SchemaT", bound=BaseModel)

Mac = Annotated[str, Field(pattern=_MAC)]
Hex40 = Annotated[str, Field(pattern=_HEX40)]


def _envelope(
    request: str,
    *,
    data: Any = None,
    error_code: int = 0,
    message: str = _OK_MESSAGE,
    status: int = 200,
    **extra: Any,
) -> JSONResponse:
    body = {
        "result": "success" if error_code == 0 else "failure",
        "message": message,
        "error_code": error_code,
        "data": {} if data is None else data,
        "request": request,
        **extra,
    }
    return _CompactJSON(body, status_code=status)


class _CompactJSON(JSONResponse):
    """Starlette's JSON answer, the same bytes, encoded by pydantic-core instead of the json
    module: a fleet's ``/keys/`` answers are megabytes each, and the simulator shares the
    machine's cores with the client it serves (three times less of them spent encoding)."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


class _Refusal(Exception):
    """An API-level error: answered as the envelope with this error_code."""

    def __init__(self, error_code: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status


def _parse(schema: type[_SchemaT], raw: bytes, *, empty_ok: bool = False) -> _SchemaT:
    if empty_ok and not raw.strip():
        raw = b"{}"
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _Refusal(3, f"Invalid input: {where}: {first['msg']}") from None


def _iso(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
