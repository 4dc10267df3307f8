"""The one exception tree of blelock.

Every failure a user can meet is a :class:`BlelockError`: it says what happened, and carries the
lock it happened to, the step of the visit, and a hint saying what to do next. The lock and the
step are attached on the way up by :func:`lock_context`, never threaded through by hand.

Misuse of the API (a wrong type, a call out of order) raises ``TypeError`` / ``RuntimeError``,
outside this tree. Messages never contain secrets: API keys, offline keys and tokens stay out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = [
    "AdapterUnavailable",
    "AuthFailed",
    "BlelockError",
    "CloudError",
    "CloudJobRunning",
    "CloudRejected",
    "CloudTimeout",
    "CloudUnavailable",
    "ConfigError",
    "DeviceNotFound",
    "LinkBusy",
    "LinkError",
    "LinkLost",
    "LinkTimeout",
    "LocalProtocolError",
    "LockRefused",
    "OfflineKeyError",
    "OfflineKeyExpired",
    "OfflineKeyMissing",
    "OfflineKeyRevoked",
    "OutOfSlots",
    "ProtocolError",
    "RateLimited",
    "RemoteProtocolError",
    "StaleServices",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "UnknownLock",
    "UnsendableRecord",
    "UsageError",
    "lock_context",
]


class BlelockError(Exception):
    """Root of every error blelock raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or type(self).hint
        self.lock_id: str | None = None
        self.step: str | None = None

    def one_line(self) -> str:
        """``lock AA:..: step: what happened; what to do`` on a single line."""
        where = " ".join(
            part
            for part in (
                f"lock {self.lock_id}:" if self.lock_id else "",
                f"{self.step}:" if self.step else "",
            )
            if part
        )
        text = f"{where} {self.message}" if where else self.message
        return f"{text}; {self.hint}" if self.hint else text


class UsageError(BlelockError):
    """The command line or its arguments are wrong (exit code 2)."""


class ConfigError(BlelockError):
    """Settings are missing or malformed."""

    hint = "check the config file and the BLELOCK_* environment variables"


# --- the radio link -------------------------------------------------------------------------


class LinkError(BlelockError):
    """Something went wrong between this machine and the lock."""


class LinkLost(LinkError):
    """The lock dropped the connection."""

    hint = "move closer to the lock and try again"


class LinkTimeout(LinkError, TimeoutError):
    """The lock did not answer in time."""

    hint = "move closer to the lock, wake it (touch the shackle) and try again"


class DeviceNotFound(LinkError):
    """The lock was not seen in range."""

    hint = "wake the lock (touch the shackle), check the MAC with `blelock scan`, and try again"


class OutOfSlots(LinkError):
    """The Bluetooth adapter has no free connection slot."""

    hint = "wait for other connections to finish, or use another adapter"


class LinkBusy(LinkError):
    """The Bluetooth stack is already busy with this lock or with scanning (BlueZ's
    ``InProgress``): a racing connection, a half-open one, or another program's scan."""

    hint = (
        "another program or an unfinished connection holds the adapter; wait a few seconds "
        "and try again (restart bluetoothd if it persists)"
    )


class AdapterUnavailable(LinkError):
    """The Bluetooth adapter is powered off or missing."""

    hint = "turn Bluetooth on (`bluetoothctl power on`) and check that the adapter is present"


class StaleServices(LinkLost):
    """The operating system's cached copy of the lock's Bluetooth services no longer matches
    the lock (its firmware changed them). The cache was cleared: a new connection reads them
    afresh, so this is retried like a dropped link."""

    hint = "try again: the next connection reads the lock's services afresh"


# --- bytes on the wire ----------------------------------------------------------------------


class ProtocolError(BlelockError):
    """Bytes that do not follow the protocol. Decoders raise only this family."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The other side sent something the protocol does not allow."""

    hint = "the lock or the cloud sent malformed data; report it with `--debug` output"


class LockRefused(BlelockError):
    """The lock understood the command and said no. ``reason`` is its result code."""

    def __init__(self, message: str, *, reason: object, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


# --- the vendor cloud -----------------------------------------------------------------------


class CloudError(BlelockError):
    """The vendor cloud could not give us what we asked for."""


class CloudUnavailable(CloudError):
    """The cloud could not be reached (connection refused, DNS, network down)."""

    hint = "check the network and the cloud URL in the config"


class CloudTimeout(CloudError, TimeoutError):
    """The cloud did not answer in time."""

    hint = "the network is slow or the cloud is overloaded; try again"


class CloudJobRunning(CloudTimeout):
    """The cloud answered, but a job it runs for us had not ended when the wait gave up (it
    goes on there): the cloud is reachable, only slow at that job."""

    hint = "the job goes on at the vendor; look at it again later"


class CloudRejected(CloudError):
    """The cloud answered, but with an error (or with something that is not its API)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        hint: str | None = None,
        transient: bool = False,
        about_content: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.error_code = error_code
        self.transient = transient
        """Worth retrying although the status says otherwise (a proxy's error page)."""
        self.about_content = about_content
        """The vendor says so in its own terms (an error code rather than a status): the
        request's content is wrong, and sending it again as it is cannot help."""


class AuthFailed(CloudRejected):
    """The cloud refused our API key."""

    hint = "check the vendor's API key in the config file or the environment"


class UnknownLock(CloudRejected):
    """The cloud does not know this lock (not registered to this company)."""

    hint = "check the lock's id, and that the lock is registered to your company"


class RateLimited(CloudRejected):
    """The cloud asked us to slow down."""

    hint = "wait a moment and try again"

    def __init__(self, message: str, *, retry_after: float | None, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


# --- offline keys and the local store -------------------------------------------------------


class OfflineKeyError(BlelockError):
    """No usable offline key for this lock."""

    hint = "run `blelock sync` while online"


class OfflineKeyMissing(OfflineKeyError):
    """No offline key for this lock (and tracking key) was ever synced."""


class OfflineKeyExpired(OfflineKeyError):
    """The cached key is older than the offline-key lifetime."""


class OfflineKeyRevoked(OfflineKeyError):
    """The last sync said this key is revoked."""


class StoreError(BlelockError):
    """The local store (database, data key) cannot be used as it is. Nothing was changed."""


class StoreFull(StoreError):
    """The disk (or the store's size limit) has no room for the records a visit can produce:
    the visit is refused before the lock is touched, so no opening goes unrecorded."""

    hint = (
        "free some space on that disk (or point --data-dir at a roomier one), then try again; "
        "the records already kept are safe"
    )


class StoreDamaged(StoreError):
    """SQLite found the file damaged while using it ("database disk image is malformed"): a
    row and an index disagree, say. The upload sets the damaged rows aside and goes on."""

    hint = (
        "run `blelock store check` to see what is damaged; the records stay in the store "
        "(see `blelock logs`)"
    )


class UnsendableRecord(StoreError):
    """An outbox record no cloud call can carry as it is (an edited or damaged row): the
    upload sets its batch aside rather than stop on it every time."""

    hint = "the record stays in the outbox (see `blelock logs`); report it"


@contextlib.contextmanager
def lock_context(lock_id: str | None, step: str) -> Iterator[None]:
    """Attach the lock and the step to any BlelockError raised inside, innermost wins."""
    try:
        yield
    except BlelockError as exc:
        exc.lock_id = exc.lock_id or lock_id
        exc.step = exc.step or step
        raise
