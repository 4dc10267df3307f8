"""The kiosk API's boundary: the request bodies it takes and the JSON views it answers with,
built from the runner's own values (pydantic here; plain dataclasses behind it).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union

from fastapi import Path
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    create_model,
    field_validator,
)

from blelock import __version__, vendors
from blelock.errors import BlelockError
from blelock.model import KeyHealth, PhoneKeyRequest, WeeklyWindow
from blelock.service.runner import Health, Job, SeenLock, VendorHealth
from blelock.vendors.base import OptionSpec

_OPTION_TEXT = r"^[\x21-\x7e]{1,64}$"
"""An option given as text: printable ASCII, no spaces (a tracking key, a number, …)."""
_PACKAGE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$"

LockIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="the lock's id as its vendor writes it (see /v1/locks)",
    ),
]
JobIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
GrantIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


# --- models: the API's boundary -------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_vendor(name: str | None) -> str | None:
    if name is not None and name not in vendors.names():
        raise ValueError(f"no vendor {name!r}; known: {', '.join(vendors.names())}")
    return name


class OperationBody(_Strict):
    """What every operation takes; each route's model adds the plugins' options (and a
    firmware package where an operation takes one)."""

    mode: Literal["auto", "online", "offline"] = Field(
        default="auto",
        description="auto: the vendor's cloud, or what was synced earlier when it is unreachable",
    )
    vendor: Annotated[str | None, AfterValidator(_known_vendor)] = Field(
        default=None,
        description="only needed for a lock the service has not heard, whose id several "
        "vendors could own",
    )
    wait: bool = Field(
        default=True, description="answer when done (true) or at once with a job to poll"
    )


def _option_field(specs: list[OptionSpec]) -> tuple[Any, Any]:
    """A flag is a boolean; a value is text (checked by the option's parser) or a number."""
    text = Annotated[str, Field(pattern=_OPTION_TEXT)]
    kinds: list[Any] = []
    if any(spec.flag for spec in specs):
        kinds.append(bool)
    if not all(spec.flag for spec in specs):
        kinds += [text, int]
    helps = "; ".join(dict.fromkeys(spec.help for spec in specs))
    return (Union[(*kinds, None)], Field(default=None, description=helps))


def body_model(
    operation: str, options: dict[str, list[OptionSpec]], package: bool | None
) -> type[OperationBody]:
    """The body of ``POST /v1/locks/{id}/{operation}``: every option of every plugin (one its
    lock's vendor does not take is refused with the reason), and ``package`` when some
    vendor's operation of this name takes one (required when every one does)."""
    fields: dict[str, Any] = {name: _option_field(specs) for name, specs in options.items()}
    if package is not None:
        about = "file name of a DFU package in the service's firmware folder"
        fields["package"] = (
            (str, Field(pattern=_PACKAGE, description=about))
            if package
            else (str | None, Field(default=None, pattern=_PACKAGE, description=about))
        )
    title = "".join(part.title() for part in operation.replace("_", "-").split("-"))
    model: type[OperationBody] = create_model(f"{title}Request", __base__=OperationBody, **fields)
    return model


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WeeklyWindowBody(_Strict):
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    start: dt.time = Field(description="lock-local wall-clock time, e.g. 09:00")
    end: dt.time | None = Field(default=None, description="lock-local; null: until midnight")


class PhoneKeyBody(_Strict):
    """A key for a renter's phone, which the vendor's own app opens the lock with."""

    vendor: Annotated[str | None, AfterValidator(_known_vendor)] = Field(
        default=None, description="only needed when several vendors give keys to phones"
    )
    lock_id: str = Field(min_length=1, max_length=64, description="the vendor's lock id")
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, e.g. +4799887766")
    start: AwareDatetime | None = Field(default=None, description="null: now")
    end: AwareDatetime | None = Field(default=None, description="null: until revoked")
    weekly: list[WeeklyWindowBody] = Field(
        default_factory=list, max_length=7, description="opening hours; none: at any time"
    )

    def request(self) -> PhoneKeyRequest:
        windows = tuple(
            WeeklyWindow(_WEEKDAYS.index(w.weekday), w.start, w.end) for w in self.weekly
        )
        return PhoneKeyRequest(self.lock_id, self.phone, self.start, self.end, windows)


class PhoneRevokeBody(_Strict):
    vendor: Annotated[str | None, AfterValidator(_known_vendor)] = None
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    lock_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="only its keys on this lock"
    )


class ErrorView(BaseModel):
    kind: str
    message: str
    lock_id: str | None
    step: str | None
    hint: str | None


class ErrorAnswer(BaseModel):
    error: ErrorView


class Progress(BaseModel):
    done: int
    total: int | None
    fraction: float | None


class JobView(BaseModel):
    id: str
    lock_id: str
    vendor: str
    operation: str
    state: Literal["queued", "running", "done", "failed"]
    queued_seq: int
    started_seq: int | None
    finished_seq: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: Progress | None
    result: dict[str, str | int | float | bool | None] | None
    error: ErrorView | None


class LockView(BaseModel):
    lock_id: str
    vendor: str
    name: str
    hardware: str
    firmware: str | None
    state: str
    rssi: int | None
    battery_mv: int | None = Field(description="from the lock's last session; None until one")
    last_seen: dt.datetime


class GrantBody(_Strict):
    """A grant as the kiosk is asked for it (``blelock access grant`` takes the same)."""

    id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="the caller's id for it (a lease's): a request sent twice is one grant",
    )
    holder: str = Field(min_length=1, max_length=200)
    locks: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=100, description="lock ids (VENDOR:LOCK where ambiguous)"
    )
    starts_at: dt.datetime | None = Field(default=None, description="default now")
    ends_at: dt.datetime | None = Field(default=None, description="default: until revoked")
    windows: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=28,
        description="weekly opening hours, lock-local: 'Mon-Sat 06:00-22:00'",
    )
    timezone: str | None = Field(default=None, max_length=64)
    uses: int | None = Field(default=None, ge=1, description="None: unlimited; 1: one-time")
    identities: dict[
        Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")],
        Annotated[str, Field(min_length=1, max_length=100)],
    ] = Field(default_factory=dict, description="the holder's identity per vendor, by name")
    codes: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")], SecretStr] = Field(
        default_factory=dict,
        description="the holder's secret codes by name (a keypad PIN, a quick click); sealed "
        "at rest, never answered back",
    )
    round: bool = Field(default=False, description="round what a vendor cannot express")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry its UTC offset (e.g. 2026-03-28T08:12:00Z)")
        return value


class PendingLogs(BaseModel):
    pending: int


class KeyHealthView(BaseModel):
    cached: int
    expiring_soon: int
    expired: int
    revoked: int
    next_expiry: dt.datetime | None
    error: str | None


class VendorHealthView(BaseModel):
    active: bool = Field(description="set up here (credentials, or this device enrolled)")
    cloud_reachable: bool | None
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    outbox_depth: int
    set_aside: int
    keys: KeyHealthView | None
    uploads_configured: bool


class HealthView(BaseModel):
    status: Literal["ok", "degraded", "stopping"]
    version: str
    adapter_up: bool | None
    last_scan_at: dt.datetime | None
    locks_in_range: int
    cloud_reachable: bool | None
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    last_sync_at: dt.datetime | None
    uploads_configured: bool
    outbox_depth: int
    set_aside: int = Field(
        description="records the cloud refused for good; `blelock upload --retry-failed` "
        "sends them again once the cause is fixed"
    )
    keys: KeyHealthView | None = Field(description="every vendor's keys, summed")
    grants: dict[str, int] | None = Field(
        default=None, description="grants' locks by status (pending, active, error, …)"
    )
    grants_error: str | None = Field(
        default=None, description="the grant store's trouble, or the last reconcile's problem"
    )
    store_room: str | None = Field(
        default=None,
        description="why the store cannot take a visit's records now (the disk is full): "
        "visits are refused until there is room; None when there is",
    )
    jobs_running: int
    jobs_queued: int
    max_connections: int
    connections_in_use: int
    peak_connections: int
    vendors: dict[str, VendorHealthView]


def _error_view(error: BlelockError) -> ErrorView:
    return ErrorView(
        kind=type(error).__name__,
        message=error.message,
        lock_id=error.lock_id,
        step=error.step,
        hint=error.hint,
    )


def _job_view(job: Job) -> JobView:
    progress = None
    if job.progress_done is not None:
        total = job.progress_total
        fraction = round(job.progress_done / total, 4) if total else None
        progress = Progress(done=job.progress_done, total=total, fraction=fraction)
    return JobView(
        id=job.id,
        lock_id=job.lock_id,
        vendor=job.vendor,
        operation=job.operation,
        state=job.state.value,
        queued_seq=job.queued_seq,
        started_seq=job.started_seq,
        finished_seq=job.finished_seq,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=progress,
        result=job.result,
        error=None if job.error is None else _error_view(job.error),
    )


def _lock_view(seen: SeenLock) -> LockView:
    s = seen.sighting
    return LockView(
        lock_id=s.lock_id,
        vendor=s.vendor,
        name=s.name,
        hardware=s.hardware,
        firmware=s.firmware,
        state=s.state.value,
        rssi=s.rssi,
        battery_mv=seen.battery_mv,
        last_seen=seen.last_seen,
    )


def _key_view(keys: KeyHealth | None) -> KeyHealthView | None:
    if keys is None:
        return None
    return KeyHealthView(
        cached=keys.cached,
        expiring_soon=keys.expiring_soon,
        expired=keys.expired,
        revoked=keys.revoked,
        next_expiry=keys.next_expiry,
        error=keys.error,
    )


def _vendor_view(vendor: VendorHealth) -> VendorHealthView:
    return VendorHealthView(
        active=vendor.active,
        cloud_reachable=vendor.cloud_reachable,
        cloud_checked_at=vendor.cloud_checked_at,
        last_sync_error=vendor.last_sync_error,
        outbox_depth=vendor.outbox_depth,
        set_aside=vendor.set_aside,
        keys=_key_view(vendor.keys),
        uploads_configured=vendor.uploads_configured,
    )


def _health_view(health: Health, store_room: str | None = None) -> HealthView:
    keys = health.keys
    degraded = (
        store_room is not None
        or health.adapter_up is False
        or health.cloud_reachable is False
        or (keys is not None and (keys.error is not None or keys.expired > 0))
        or bool(health.grants and health.grants.get("error"))
        or health.grants_error is not None
    )
    status: Literal["ok", "degraded", "stopping"] = (
        "stopping" if health.stopping else "degraded" if degraded else "ok"
    )
    return HealthView(
        status=status,
        version=__version__,
        adapter_up=health.adapter_up,
        last_scan_at=health.last_scan_at,
        locks_in_range=health.locks_in_range,
        cloud_reachable=health.cloud_reachable,
        cloud_checked_at=health.cloud_checked_at,
        last_sync_error=health.last_sync_error,
        last_sync_at=health.last_sync_at,
        uploads_configured=health.uploads_configured,
        outbox_depth=health.outbox_depth,
        set_aside=health.set_aside,
        keys=_key_view(keys),
        store_room=store_room,
        jobs_running=health.jobs_running,
        jobs_queued=health.jobs_queued,
        max_connections=health.max_connections,
        connections_in_use=health.connections_in_use,
        peak_connections=health.peak_connections,
        vendors={name: _vendor_view(vendor) for name, vendor in health.vendors.items()},
        grants=None if health.grants is None else dict(health.grants),
        grants_error=health.grants_error,
    )
