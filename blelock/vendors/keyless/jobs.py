"""Keyless jobs composed from Settings: activate this companion as an operating device, sync
its keys and the platform's trust material, open a lock (online, or with what was synced),
and upload the audit entries and re-keying requests kept in the outbox.

The operating device talks to the platform through the stand-in Mobile API
(:class:`blelock.vendors.keyless.cloud.KeylessMobile`); see docs/keyless-ble-standin.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blelock import preload
from blelock.clock import SystemClock
from blelock.cloud._policy import AT_THE_LOCK, RetryPolicy
from blelock.config import Settings
from blelock.errors import (
    AuthFailed,
    CloudError,
    CloudTimeout,
    ConfigError,
    ProtocolError,
    RemoteProtocolError,
    StoreError,
    UnknownLock,
    UnsendableRecord,
    lock_context,
)
from blelock.model import LogRecord
from blelock.store import Store
from blelock.transport.scan import Found, FoundLater, sighted
from blelock.vendors.base import KeptClients
from blelock.vendors.keyless import protocol as keyless
from blelock.vendors.keyless.advert import ADVERTS
from blelock.vendors.keyless.settings import keyless_settings
from blelock.vendors.keyless.store import (
    DeviceIdentity,
    KeylessKey,
    KeylessLockRecord,
    KeylessStore,
    PlatformTrust,
)
from blelock.vendors.keyless.visit import (
    AUDIT_LOG,
    CSR_LOG,
    KeylessMaterial,
    KeylessOutcome,
    KeylessVisit,
    StatementSource,
)
from blelock.vendors.outbox import drain_outbox

if TYPE_CHECKING:
    # The platform's client (httpx, the Mobile API's models) comes with the first cloud call:
    # an offline visit makes none.
    from blelock.vendors.keyless.cloud import KeylessMobile

__all__ = [
    "CSR_LOG",
    "REKEY_AHEAD",
    "KeylessSyncReport",
    "KeylessUploader",
    "Mode",
    "activate",
    "open_lock",
    "set_lock_time",
    "sync_keyless",
]


NAME = "keyless"
"""The plugin's name: its outbox stream and settings section."""

REKEY_AHEAD = dt.timedelta(days=30)
"""Start re-keying a lock whose certificate expires within this (blelock's policy: the vendor
says only that a certificate not renewed in time makes the lock inoperable)."""

CERTIFICATES_AT_ONCE = 8
"""Pending-certificate requests a sync has in flight: a fleet's locks each need one, and one
after another they were a round trip a lock."""

Mode = Literal["auto", "online", "offline"]


@dataclass(frozen=True, slots=True)
class KeylessSyncReport:
    operating_keys: int
    offline_keys: int
    dropped: int
    """Cached keys the platform no longer lists (revoked or expired): deleted."""
    revocation_version: int
    certificates_pending: int
    """Re-keying certificates fetched, to be installed at the next visit of their lock."""


_CLOUD_MODULE = "blelock.vendors.keyless.cloud"
_LINK_MODULE = "blelock.transport.ble"
"""Imported for the visit (bleak-retry-connector and the D-Bus library under it), after the
sync that comes first online: in a cold process a preload brings it during the sync's round
trips (see :mod:`blelock.preload`)."""


def _new_mobile(
    settings: Settings, device: DeviceIdentity | None, retry: RetryPolicy | None
) -> KeylessMobile:
    from blelock.vendors.keyless.cloud import KeylessMobile

    return KeylessMobile(
        keyless_settings(settings).url,
        operating_device_id=None if device is None else device.operating_device_id,
        access_key=None if device is None else device.access_key,
        api_key=keyless_settings(settings).api_key,
        timeouts=settings.timeouts,
        retry=retry,
    )


class _Platform:
    """One platform client for a job, shared by all its calls, so that the job logs in once
    (the token is good for an hour): a visit's sync, time statements and upload, or the
    upkeep's sync. Made on first use: an offline visit makes none. Kept in ``clients`` when
    the caller keeps clients (a kiosk, the agent), so later jobs log in only when the token is
    due; else closed with the job. Use as ``async with _Platform(...) as platform:``."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clients: KeptClients | None,
        *,
        retry: RetryPolicy | None = AT_THE_LOCK,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clients = clients
        self._retry = retry
        self._mobile: KeylessMobile | None = None
        self._exit = contextlib.AsyncExitStack()

    async def __aenter__(self) -> _Platform:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit.aclose()

    async def mobile(self) -> KeylessMobile:
        if self._mobile is None:
            device = await _device(await keyless_store(self._store))
            await preload.imported(_CLOUD_MODULE)  # an offline open loads no httpx

            def make() -> KeylessMobile:
                return _new_mobile(self._settings, device, self._retry)

            if self._clients is None:
                self._mobile = await self._exit.enter_async_context(make())
            else:
                # Per retry policy (a visit tries once) and under the device's id (a companion
                # activated anew gets a client of its own).
                name = f"keyless.{self._retry!r}.{device.operating_device_id}"
                self._mobile = await self._clients.get(name, make)
        return self._mobile


async def keyless_store(store: Store) -> KeylessStore:
    """The Keyless device identity, keys and certificates (needs the data key)."""
    data_key = await store.data_key()
    return store.adapter(
        "keyless.store", lambda opened: KeylessStore(opened.database, data_key, SystemClock())
    )


async def _device(keys: KeylessStore) -> DeviceIdentity:
    device = await keys.device()
    if device is None:
        raise ConfigError(
            "this companion is not a Keyless operating device yet",
            hint="run `blelock keyless activate INVITATION_CODE` with the code the "
            "administrator's invitation gave you",
        )
    return device


async def activate(settings: Settings, store: Store, invitation_code: str) -> str:
    """Accept an operating-device invitation: a new device key, whose public half the platform
    binds every operating key to; its credentials are sealed in the store. Returns the
    operatingDeviceId."""
    keys = await keyless_store(store)
    private_key = keyless.generate_key()
    await preload.imported(_CLOUD_MODULE)
    async with _new_mobile(settings, None, None) as mobile:
        with lock_context(None, "activate the operating device"):
            activation = await mobile.activate(
                invitation_code, keyless.public_key_bytes(private_key.public_key())
            )
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    device = DeviceIdentity(
        activation.operating_device_id, activation.access_key.get_secret_value(), der
    )
    await keys.save_device(device)
    return device.operating_device_id


async def sync_keyless(
    settings: Settings,
    store: Store,
    *,
    retry: RetryPolicy | None = None,
    only_lock: str | None = None,
    clients: KeptClients | None = None,
) -> KeylessSyncReport:
    """Fetch the platform CA, the revocation list, this device's operating and offline keys and
    any certificate issued for a pending re-keying; the store then holds exactly those keys.
    ``only_lock``: refresh that lock's certificates only (one call, not one per lock: a visit
    needs no other). ``clients``: where the platform's client outlives the sync."""
    keys = await keyless_store(store)
    async with _Platform(settings, store, clients, retry=retry) as platform:
        return await _sync_with(await platform.mobile(), keys, only_lock)


async def _sync_with(
    mobile: KeylessMobile, keys: KeylessStore, only_lock: str | None
) -> KeylessSyncReport:
    with lock_context(None, "sync Keyless keys"):
        # Four independent lists, asked at once: one round trip to wait for, not four.
        async with _together() as group:
            asked_ca = group.create_task(mobile.platform_ca())
            asked_revocations = group.create_task(mobile.revocations())
            asked_operating = group.create_task(mobile.operating_keys())
            asked_offline = group.create_task(mobile.offline_keys())
        ca_der, revocations = asked_ca.result(), asked_revocations.result()
        operating, offline = asked_operating.result(), asked_offline.result()
        ca_key = _ca_public_key(ca_der)
        fresh: list[KeylessKey] = []
        certificates: dict[str, bytes] = {}
        for item in operating:
            fresh.append(_key(item.grant, ca_key, None))
            certificates[item.locking_device_id] = item.certificate
        for offline_key in offline:
            primary = offline_key.primary
            secret = primary.private_key.get_secret_value()
            fresh.append(_key(primary.grant, ca_key, secret))
            if (other := offline_key.alternative) is not None:
                secret = other.private_key.get_secret_value()
                fresh.append(_key(other.grant, ca_key, secret, role="alternative"))
        if only_lock is not None:
            certificates = {k: v for k, v in certificates.items() if k == only_lock}
        # One request a lock: a fleet's, a few at a time rather than one round trip each.
        at_once = asyncio.Semaphore(CERTIFICATES_AT_ONCE)

        async def pending_certificate(lock: str) -> tuple[str, bytes | None]:
            async with at_once:
                return lock, await mobile.certificate(lock)

        async with _together() as group:
            asked = [group.create_task(pending_certificate(lock)) for lock in certificates]
        pending = dict(task.result() for task in asked)
    dropped = await keys.apply_sync(
        PlatformTrust(ca_der, revocations.signed_list),
        [KeylessLockRecord(lock, cert, pending[lock]) for lock, cert in certificates.items()],
        fresh,
        kinds=("OPERATING", "OFFLINE"),
    )
    return KeylessSyncReport(
        operating_keys=sum(key.kind == "OPERATING" for key in fresh),
        offline_keys=sum(key.kind == "OFFLINE" for key in fresh),
        dropped=dropped,
        revocation_version=revocations.version,
        certificates_pending=sum(cert is not None for cert in pending.values()),
    )


async def open_lock(
    lock_id: str,
    settings: Settings,
    store: Store,
    *,
    mode: Mode = "auto",
    rekey: bool = False,
    found: Found | FoundLater | None = None,
    radio_needed: Callable[[], Awaitable[None]] | None = None,
    radio_done: Callable[[], None] | None = None,
    clients: KeptClients | None = None,
) -> tuple[KeylessOutcome, bool]:
    """Open the lock; (the outcome, whether it went online). Online first (``auto``): a sync
    brings fresh keys and any pending certificate; with no network, what was synced before.
    A lock whose certificate expires within :data:`REKEY_AHEAD` starts re-keying on the way.
    A kiosk's connection slot is asked for (``radio_needed``) after the sync, before the scan
    or the connection, and given back (``radio_done``) once the link is closed. ``found``: the
    sighting, or what gives it once the keys are at hand (see :func:`sighted`). ``clients``:
    where the platform's client outlives the visit (see :class:`_Platform`)."""
    required = mode == "online"

    async def run(visit: KeylessVisit) -> KeylessOutcome:
        return await visit.open(rekey=rekey or await _rekey_due(store, lock_id))

    async with _Platform(settings, store, clients) as platform:
        online = mode != "offline" and await _refresh(
            settings, platform, store, lock_id, required=required, cold=clients is None
        )
        outcome = await _with_visit(
            lock_id,
            settings,
            store,
            platform if online else None,
            keyless.Operation.OPEN,
            run,
            found,
            radio_needed=radio_needed,
            radio_done=radio_done,
        )
    return outcome, online


async def set_lock_time(
    lock_id: str,
    settings: Settings,
    store: Store,
    *,
    found: Found | FoundLater | None = None,
    radio_needed: Callable[[], Awaitable[None]] | None = None,
    radio_done: Callable[[], None] | None = None,
    clients: KeptClients | None = None,
) -> tuple[KeylessOutcome, bool]:
    """Set the lock's clock to this machine's (needs a key allowing UPDATE_TIME); (the outcome,
    whether it went online). Setting it back asks the platform, mid-visit, for a time
    statement bound to the lock's nonce; offline, the lock goes back only within its
    tolerance."""

    async def run(visit: KeylessVisit) -> KeylessOutcome:
        return await visit.set_time()

    async with _Platform(settings, store, clients) as platform:
        online = await _refresh(
            settings, platform, store, lock_id, required=False, cold=clients is None
        )
        outcome = await _with_visit(
            lock_id,
            settings,
            store,
            platform if online else None,
            keyless.Operation.UPDATE_TIME,
            run,
            found,
            _statement_source(settings, platform) if online else None,
            radio_needed=radio_needed,
            radio_done=radio_done,
        )
    return outcome, online


def _statement_source(settings: Settings, platform: _Platform) -> StatementSource:
    async def fetch(lock_id: str, nonce: bytes) -> bytes:
        try:
            async with asyncio.timeout(settings.timeouts.cloud):
                return await (await platform.mobile()).time_statement(lock_id, nonce)
        except TimeoutError:
            raise CloudTimeout(
                f"the Keyless platform did not answer within {settings.timeouts.cloud:g} s"
            ) from None

    return fetch


async def _refresh(
    settings: Settings,
    platform: _Platform,
    store: Store,
    lock_id: str,
    *,
    required: bool,
    cold: bool,
) -> bool:
    """Sync before a visit, within one cloud timeout: past it, a person waiting at the lock is
    better served by the keys synced earlier (unless ``required``). ``cold``: a process that
    keeps no clients, whose visit's link library is imported while the platform answers."""
    try:
        async with asyncio.timeout(settings.timeouts.cloud):
            mobile = await platform.mobile()
            if cold:
                preload.in_background([_LINK_MODULE])
            await _sync_with(mobile, await keyless_store(store), only_lock=lock_id)
    except CloudError:
        if required:
            raise
        return False
    except TimeoutError:
        if required:
            raise CloudTimeout(
                f"the Keyless platform did not answer within {settings.timeouts.cloud:g} s"
            ) from None
        return False
    return True


async def _with_visit(
    lock_id: str,
    settings: Settings,
    store: Store,
    platform: _Platform | None,
    operation: keyless.Operation,
    run: Callable[[KeylessVisit], Awaitable[KeylessOutcome]],
    found: Found | FoundLater | None,
    statements: StatementSource | None = None,
    *,
    radio_needed: Callable[[], Awaitable[None]] | None = None,
    radio_done: Callable[[], None] | None = None,
) -> KeylessOutcome:
    keys = await keyless_store(store)
    with lock_context(lock_id, "prepare the visit"):
        material = await _material(keys, lock_id, operation)
    if radio_needed is not None:
        with lock_context(lock_id, "wait for a connection slot"):
            await radio_needed()
    heard = await sighted(lock_id, settings, [ADVERTS], found)
    device, name = heard.device, heard.sighting.name
    await preload.imported(_LINK_MODULE)
    from blelock.transport.ble import open_link

    visit = KeylessVisit(
        lock_id,
        lambda: open_link(device, settings, name=name),
        material,
        settings.timeouts,
        store.outbox(NAME),
        statements=statements,
    )
    try:
        outcome = await run(visit)
    finally:
        # The link is closed: saving a certificate and the upload need no connection slot.
        if radio_done is not None:
            radio_done()
    if outcome.certificate_installed is not None:
        await keys.save_lock(lock_id, outcome.certificate_installed, None)
    if platform is not None:  # online
        # What the visit kept (audit entries, a CSR) goes up now; the outbox holds it either way.
        with contextlib.suppress(CloudError):
            uploader = KeylessUploader(await platform.mobile())
            await drain_outbox(uploader, store.outbox(NAME))
    return outcome


async def _material(
    keys: KeylessStore, lock_id: str, operation: keyless.Operation
) -> KeylessMaterial:
    device = await _device(keys)
    trust = await keys.platform()
    if trust is None:
        raise ConfigError(
            "no Keyless keys were ever synced",
            hint="run `blelock sync` while online",
        )
    ca_certificate = x509.load_der_x509_certificate(trust.ca_certificate)
    ca_key = _ca_public_key(trust.ca_certificate)
    # A permission grants one operation: offer the lock only keys for the one asked of it.
    cached = [
        key
        for key in await keys.keys_for(lock_id)
        if operation in keyless.verify_grant(key.grant, ca_key).operations
    ]
    if not cached:
        raise ConfigError(
            f"this device holds no valid key allowing {operation.value} on the lock",
            hint="run `blelock sync` while online; if it still has none, ask the administrator "
            "for a permission or an offline key",
        )
    credentials = [
        keyless.Credential(key.grant, _private_key(key.private_key_der or device.private_key_der))
        for key in cached
    ]
    record = await keys.lock(lock_id)
    return KeylessMaterial(
        ca_certificate,
        credentials,
        revocations=trust.revocations,
        pending_certificate=None if record is None else record.pending_certificate,
    )


async def _rekey_due(store: Store, lock_id: str) -> bool:
    """The lock's certificate expires soon, none is pending, and a permission (an operating
    key) makes this device one the platform takes a CSR from."""
    keys = await keyless_store(store)
    record = await keys.lock(lock_id)
    if record is None or record.pending_certificate is not None:
        return False
    if not any(key.kind == "OPERATING" for key in await keys.keys_for(lock_id)):
        return False
    expires = x509.load_der_x509_certificate(record.certificate).not_valid_after_utc
    return bool(expires - SystemClock().now_utc() <= REKEY_AHEAD)


class KeylessUploader:
    """What :func:`blelock.vendors.outbox.drain_outbox` uploads Keyless records through. The
    platform keeps one audit entry per (lock, sequence number) and one pending CSR per lock, so
    a batch sent twice changes nothing: the batch's idempotency key is not needed."""

    def __init__(self, mobile: KeylessMobile) -> None:
        self._mobile = mobile

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        store: Store,
        *,
        retry: RetryPolicy | None = None,
        clients: KeptClients | None = None,
    ) -> AsyncIterator[KeylessUploader]:
        async with _Platform(settings, store, clients, retry=retry) as platform:
            yield cls(await platform.mobile())

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        entries: defaultdict[str, list[bytes]] = defaultdict(list)
        for record in records:
            try:
                payload = bytes.fromhex(record.payload)
            except ValueError:
                raise UnsendableRecord(
                    f"an outbox record of lock {record.lock_id} is not hex; it was not sent"
                ) from None
            if record.context == CSR_LOG:
                try:
                    csr, endorsement = keyless.decode_rekey_payload(payload)
                except ProtocolError:
                    raise UnsendableRecord(
                        f"a re-keying request of lock {record.lock_id} in the outbox is not a "
                        "CSR with its endorsement; it was not sent"
                    ) from None
                try:
                    await self._mobile.submit_csr(record.lock_id, csr, endorsement)
                except AuthFailed as exc:
                    # A 403 here is about this lock (no permission on it any more), not about
                    # our credentials: the request is set aside rather than stop every upload.
                    raise UnknownLock(
                        f"the platform refuses this device's certificate request for lock "
                        f"{record.lock_id}: {exc.message}",
                        status=exc.status,
                        hint="ask the administrator for a permission on the lock, then "
                        "`blelock upload --retry-failed`",
                    ) from None
            elif record.context == AUDIT_LOG:
                entries[record.lock_id].append(payload)
            else:
                raise UnsendableRecord(
                    f"an outbox record of lock {record.lock_id} is of unknown kind "
                    f"{record.context!r}; it was not sent"
                )
        for lock_id, blobs in entries.items():
            with lock_context(lock_id, "upload audit entries"):
                await self._mobile.upload_audit_log(lock_id, blobs)


@contextlib.asynccontextmanager
async def _together() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose first failure is raised as itself (the others are cancelled), as
    the same calls made one after another would raise it: callers catch a CloudError, not a
    group of them."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _ca_public_key(ca_der: bytes) -> ec.EllipticCurvePublicKey:
    key = x509.load_der_x509_certificate(ca_der).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RemoteProtocolError("the platform CA does not have a P-256 key")
    return key


def _key(
    grant_blob: bytes,
    ca_key: ec.EllipticCurvePublicKey,
    private_key: bytes | None,
    *,
    role: Literal["primary", "alternative"] = "primary",
) -> KeylessKey:
    # Verified before it is kept: a grant the CA did not sign must not sit in the cache.
    grant = keyless.verify_grant(grant_blob, ca_key)
    return KeylessKey(
        grant.locking_device_id,
        grant.key_id,
        "OFFLINE" if grant.kind is keyless.GrantKind.OFFLINE else "OPERATING",
        role,
        grant.not_before,
        grant.not_after,
        grant_blob,
        private_key,
    )


def _private_key(der: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StoreError("a Keyless private key in the store is not a P-256 key")
    return key
