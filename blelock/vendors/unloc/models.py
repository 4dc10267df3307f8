"""The Unloc API v2 at blelock's boundary: pydantic models of what goes out and comes back, and
the checks made before anything is sent.

Rules (vendor document "Managing keys", developer.unloc.app/docs/recurrence, and the field
report in shared/research §C): ``appUserId`` is an E.164 phone number; a recurrence is a list of
``timeSpans`` (weekday ``sun`` … ``sat``, hours 0-24, minutes 0-59, one span per weekday, start
before end) in the lock's time zone; ``end`` or ``durationMinutes``, not both; ``start`` and
``end`` are left out rather than sent as null (the live API refuses null); the docs spell the
recurrence key both ``timeSpans`` and ``timespans``, so both are read and ``timeSpans`` written.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from blelock.errors import UsageError
from blelock.model import WeeklyWindow

__all__ = [
    "FINAL_JOB_STATUSES",
    "KEY_STATES",
    "MAX_PAGE_LIMIT",
    "WEEKDAYS",
    "Job",
    "Key",
    "Lock",
    "NewKey",
    "Problem",
    "TimeSpan",
    "Token",
    "check_phone",
    "new_key",
    "spans_from_windows",
    "utc_text",
]

MAX_PAGE_LIMIT: Final = 2500
"""GET keys: ``limit`` defaults to and is at most 2500."""
WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
KEY_STATES: Final = ("creating", "scheduled", "active", "inactive", "expired", "revoked", "error")
JobStatus = Literal[
    "pending", "inProgress", "succeeded", "failedValidation", "failedJob", "timeout"
]
FINAL_JOB_STATUSES: Final = frozenset({"succeeded", "failedValidation", "failedJob", "timeout"})
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def check_phone(text: str, name: str = "appUserId") -> str:
    """An E.164 phone number (``+`` then 7-15 digits, no leading 0), spaces allowed in input."""
    compact = re.sub(r"[ \-()]", "", text.strip())
    if not _E164.fullmatch(compact):
        raise UsageError(
            f"{name} {text!r} is not a phone number in E.164 format",
            hint="write it with the country code, e.g. +4799887766",
        )
    return compact


def utc_text(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and Z, as the docs write it."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Model(BaseModel):
    # defer_build: each validator is built when it first validates, not at import.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True, defer_build=True)


class TimeSpan(_Model):
    """One weekly period, wall-clock times in the lock's time zone."""

    weekday: Literal["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    start_hour: int = Field(alias="startHour", ge=0, le=24)
    start_minute: int = Field(alias="startMinute", ge=0, le=59)
    end_hour: int = Field(alias="endHour", ge=0, le=24)
    end_minute: int = Field(alias="endMinute", ge=0, le=59)

    @model_validator(mode="after")
    def _starts_before_it_ends(self) -> TimeSpan:
        start = self.start_hour * 60 + self.start_minute
        end = self.end_hour * 60 + self.end_minute
        if start >= 24 * 60 or end > 24 * 60:
            raise ValueError("must lie within the day (hour 24 only as 24:00)")
        if start >= end:
            raise ValueError("must start before it ends")
        return self

    def text(self) -> str:
        return (
            f"{self.weekday} {self.start_hour:02d}:{self.start_minute:02d}-"
            f"{self.end_hour:02d}:{self.end_minute:02d}"
        )


class Recurrence(_Model):
    time_spans: tuple[TimeSpan, ...] = Field(
        validation_alias=AliasChoices("timeSpans", "timespans"),
        serialization_alias="timeSpans",
        min_length=1,
    )

    @field_validator("time_spans")
    @classmethod
    def _one_per_weekday(cls, spans: tuple[TimeSpan, ...]) -> tuple[TimeSpan, ...]:
        days = [span.weekday for span in spans]
        twice = sorted({day for day in days if days.count(day) > 1})
        if twice:
            raise ValueError(f"only one time span per weekday ({', '.join(twice)} given twice)")
        return spans


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (instants are UTC)")
    return value


class NewKey(_Model):
    """One key to create; dumped with :meth:`body` (absent fields left out, never null)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True, defer_build=True)

    lock_id: str = Field(alias="lockId", min_length=1)
    app_user_id: str = Field(alias="appUserId")
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    duration_minutes: int | None = Field(default=None, alias="durationMinutes", gt=0)
    recurrence: Recurrence | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("app_user_id")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not _E164.fullmatch(value):
            raise ValueError("must be a phone number in E.164 format (e.g. +4799887766)")
        return value

    @field_validator("start", "end")
    @classmethod
    def _instants_are_aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _aware(value)

    @model_validator(mode="after")
    def _end_or_duration(self) -> NewKey:
        if self.end is not None and self.duration_minutes is not None:
            raise ValueError("give end or durationMinutes, not both")
        if self.end is not None and self.start is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def body(self) -> dict[str, Any]:
        """The JSON the API takes: ``start``/``end`` omitted when not given (null is refused)."""
        out: dict[str, Any] = {"lockId": self.lock_id, "appUserId": self.app_user_id}
        if self.start is not None:
            out["start"] = utc_text(self.start)
        if self.end is not None:
            out["end"] = utc_text(self.end)
        if self.duration_minutes is not None:
            out["durationMinutes"] = self.duration_minutes
        if self.recurrence is not None:
            out["recurrence"] = self.recurrence.model_dump(by_alias=True, mode="json")
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


def new_key(**fields: Any) -> NewKey:
    """A checked :class:`NewKey`; a UsageError naming the first parameter that is wrong."""
    try:
        return NewKey.model_validate(fields)
    except ValidationError as exc:
        raise UsageError(
            f"the key is not valid: {_first_problem(exc)}",
            hint="correct it and try again; nothing was sent to Unloc",
        ) from None


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_input=False, include_url=False)[0]
    names = {
        "lock_id": "lockId",
        "app_user_id": "appUserId",
        "duration_minutes": "durationMinutes",
        "time_spans": "timeSpans",
        "start_hour": "startHour",
        "start_minute": "startMinute",
        "end_hour": "endHour",
        "end_minute": "endMinute",
    }
    where = ".".join(names.get(str(part), str(part)) for part in first["loc"]) or "the key"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def spans_from_windows(windows: Sequence[WeeklyWindow]) -> Recurrence:
    """The neutral weekly windows (Monday = 0) as Unloc's timeSpans."""
    spans = []
    for window in windows:
        end = (window.end.hour, window.end.minute) if window.end is not None else (24, 0)
        spans.append(
            {
                "weekday": WEEKDAYS[(window.weekday + 1) % 7],
                "startHour": window.start.hour,
                "startMinute": window.start.minute,
                "endHour": end[0],
                "endMinute": end[1],
            }
        )
    try:
        return Recurrence.model_validate({"timeSpans": spans})
    except ValidationError as exc:
        raise UsageError(f"the weekly window is not valid: {_first_problem(exc)}") from None


class AppUser(_Model):
    id: str
    name: str | None = None


class Key(_Model):
    id: str
    lock_id: str = Field(alias="lockId")
    app_user: AppUser | None = Field(default=None, alias="appUser")
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    created: dt.datetime | None = None
    state: str
    recurrence: Recurrence | None = None

    @property
    def phone(self) -> str | None:
        return None if self.app_user is None else self.app_user.id


class KeyResult(_Model):
    """An entry of a job's ``resultData``; DriftIQ found the key's id as ``id``, ``keyId`` or
    ``key.id`` (undocumented), so all three are read."""

    id: str | None = None
    reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _find_id(cls, value: Any) -> Any:
        if isinstance(value, dict) and "id" not in value:
            nested = value.get("key")
            found = value.get("keyId") or (nested.get("id") if isinstance(nested, dict) else None)
            return {**value, "id": found}
        return value


class ResultData(_Model):
    created_keys: tuple[KeyResult, ...] = Field(default=(), alias="createdKeys")
    failed_keys: tuple[KeyResult, ...] = Field(default=(), alias="failedKeys")
    creating_keys: tuple[KeyResult, ...] = Field(default=(), alias="creatingKeys")


class Job(_Model):
    id: str
    type: str | None = None
    status: JobStatus
    failure_reason: str | None = Field(default=None, alias="failureReason")
    result_data: ResultData | None = Field(default=None, alias="resultData")

    @property
    def finished(self) -> bool:
        return self.status in FINAL_JOB_STATUSES


class Lock(_Model):
    id: str
    name: str | None = None
    timezone: str | None = None
    lock_connection_id: str | None = Field(default=None, alias="lockConnectionId")


class Token(_Model):
    access_token: SecretStr
    token_type: str = "bearer"
    expires_in: int = Field(default=3600, gt=0)


class InvalidParam(_Model):
    name: str
    reason: str | None = None


class Problem(_Model):
    title: str | None = None
    detail: str | None = None
    invalid_params: tuple[InvalidParam, ...] = Field(default=(), alias="invalidParams")
    error_description: str | None = Field(
        default=None, validation_alias=AliasChoices("errorDescription", "error_description")
    )

    def said(self) -> str:
        return (self.detail or self.error_description or self.title or "").strip()
