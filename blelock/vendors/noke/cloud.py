"""The Nokē Core API client: command strings for online unlocks, lock info, log upload, offline
keys, quick clicks and activity.

Every call is a JSON ``POST`` with ``Authorization: Bearer <key>``: the server API key, except
``/upload/`` which takes the *mobile* API key (vendor doc). The keys leave this object only
through that header; they are never in its repr, in a log line or in an exception's text.

The answer's envelope decides the outcome (noke.md §9.5): ``error_code`` 2 → :class:`AuthFailed`,
6 / 7 → :class:`UnknownLock`, 3 → :class:`CloudRejected` "malformed", any other non-zero code or
``result == "failure"`` → :class:`CloudRejected` carrying the code.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from blelock.cloud._http import (
    CloudClient,
    RetryPolicy,
    json_body,
    map_http_errors,
    raise_for_status,
    with_retries,
)
from blelock.config import Settings, Timeouts
from blelock.errors import (
    AuthFailed,
    CloudRejected,
    ConfigError,
    RemoteProtocolError,
    UnknownLock,
    UsageError,
)
from blelock.model import LogRecord, MacAddress
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.models import (
    ActivityData,
    ActivityEntry,
    ActivityRequest,
    AnswerMac,
    CommandsData,
    Envelope,
    KeyScope,
    KeysData,
    KeysRequest,
    LockInfo,
    LockQuickClicks,
    LocksData,
    LocksRequest,
    QuickClickDisplay,
    QuickClickEntry,
    QuickClickRequest,
    QuickClickSpec,
    QuickClickState,
    TypedEnvelope,
    UnlockRequest,
)
from blelock.vendors.noke.quick_clicks import check_issue, check_revoke
from blelock.vendors.noke.settings import noke_settings
from blelock.vendors.noke.values import ListedKeys, OfflineGrant

__all__ = ["MacSink", "NokeCloud"]

_COMPACT_JSON: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
)
"""Compact and UTF-8 as pydantic writes JSON, so a body is the same bytes either way."""

_MAX_CLOUD_MESSAGE = 200
"""Characters of the cloud's own ``message`` quoted in an error (it is free text)."""

_ModelT = TypeVar("_ModelT", bound=BaseModel)

_MOBILE_KEY_HINT = "check the mobile API key (noke_mobile_key / BLELOCK_NOKE_MOBILE_KEY)"
_BUG_HINT = "report it with `--debug` output; the vendor's API may have changed"

_LISTING_BATCH: Final = 5000
"""MACs of a streamed ``/lock/`` listing handed on at once: what of it is in memory."""
_LISTED_LOCKS: Final = ("data", "locks")
_MACS: Final = TypeAdapter(list[AnswerMac])


class MacSink(Protocol):
    """Where a streamed listing of the company's locks goes, batch by batch."""

    async def restart(self) -> None:
        """Forget what an earlier attempt added (a retried listing starts again)."""

    async def add(self, macs: Sequence[MacAddress]) -> None:
        """Keep these MACs (a MAC may come again; it is kept once)."""


class _MacList:
    def __init__(self) -> None:
        self.macs: list[MacAddress] = []

    async def restart(self) -> None:
        self.macs.clear()

    async def add(self, macs: Sequence[MacAddress]) -> None:
        self.macs.extend(macs)


class NokeCloud(CloudClient):
    """One Nokē Core API endpoint (sandbox or production) and its keys.

    Use as ``async with NokeCloud(url, key, ...) as cloud:`` (or call :meth:`aclose`).
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str,
        *,
        mobile_key: SecretStr | str | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._api_key = _secret(api_key)
        self._mobile_key = None if mobile_key is None else _secret(mobile_key)
        super().__init__(
            base_url if base_url.endswith("/") else base_url + "/", timeouts, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, retry: RetryPolicy | None = None) -> NokeCloud:
        """The configured cloud, or a ConfigError saying there is no API key to call it with."""
        section = noke_settings(settings)
        if section.api_key is None:
            raise ConfigError(
                "no Nokē API key is configured",
                hint="set api_key in the config file's [noke] section, or BLELOCK_NOKE__API_KEY",
            )
        return cls(
            section.url,
            section.api_key,
            mobile_key=section.mobile_key,
            timeouts=settings.timeouts,
            retry=retry,
        )

    def __repr__(self) -> str:
        mobile = "set" if self._mobile_key is not None else "none"
        return f"NokeCloud(base_url={str(self._client.base_url)!r}, mobile_key={mobile})"

    # --- endpoints ------------------------------------------------------------------------

    async def unlock_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        """``/unlock/``: the 20-byte packets to write to the lock for this session, in order."""
        return await self._commands("unlock", mac, session_hex, tracking_key)

    async def unshackle_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        """``/unshackle/`` (HD padlocks): as :meth:`unlock_commands`, but frees the shackle."""
        return await self._commands("unshackle", mac, session_hex, tracking_key)

    async def fwupdate_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        """``/fwupdate/``: the packets that put the lock into its bootloader for 60 s."""
        return await self._commands("fwupdate", mac, session_hex, tracking_key)

    async def locks(self, macs: Sequence[MacAddress] | None = None) -> list[LockInfo]:
        """``/lock/``: what the cloud knows of these locks (``None``: every lock of the company)."""
        body = LocksRequest(macs=list(macs) if macs is not None else None)
        envelope = await self._post("lock", body, mac=_one(macs))
        return _validate(LocksData, envelope.data, "lock", self.host).locks

    async def lock_macs(self) -> list[MacAddress]:
        """The MAC of every lock of the company, in the cloud's order, as one list (a fleet
        sync streams them with :meth:`list_lock_macs` instead). Retried."""
        into = _MacList()
        await self.list_lock_macs(into)
        return into.macs

    async def list_lock_macs(self, into: MacSink) -> None:
        """``/lock/`` with an empty body, the answer streamed: the MAC of every lock of the
        company goes to ``into`` in batches as the bytes arrive, so neither the answer (~300
        bytes a lock, the Core API documents no paging) nor its entries are ever held whole.
        Retried when transient, each attempt starting with ``into.restart()``. The envelope
        is checked once the answer is complete: what ``into`` holds counts only if this
        returns."""
        await with_retries(lambda: self._stream_lock_macs(into), self._retry)

    async def _stream_lock_macs(self, into: MacSink) -> None:
        await into.restart()
        body = LocksRequest().model_dump_json(exclude_none=True).encode()
        with map_http_errors(self.host):
            async with self._client.stream(
                "POST", "lock/", content=body, headers=self._headers(mobile=False)
            ) as response:
                raise_for_status(response)
                head = await self._stream_listing(response, into)
        envelope = _validate(Envelope, head, "lock", self.host)
        if not envelope.ok:
            raise _envelope_error(envelope, "lock", self.host, None, response.status_code)

    async def _stream_listing(self, response: httpx.Response, into: MacSink) -> Any:
        """Read the answer's entries as its bytes arrive; hand their MACs on in batches and
        return the rest of the answer (the envelope's own fields)."""
        from blelock.cloud.json_stream import NotJson, StreamedArray  # an unlock never needs it

        reader = StreamedArray(_LISTED_LOCKS)
        batch: list[object] = []
        entries = seen = 0

        def take(listed: list[Any]) -> None:
            nonlocal entries
            for entry in listed:
                if isinstance(entry, dict):
                    entries += 1
                    if "mac" in entry:
                        batch.append(entry["mac"])

        try:
            async for piece in response.aiter_bytes():
                take(reader.feed(piece))
                while len(batch) >= _LISTING_BATCH:
                    await into.add(self._listed_macs(batch[:_LISTING_BATCH], seen))
                    seen, batch = seen + _LISTING_BATCH, batch[_LISTING_BATCH:]
            last, head = reader.close()
            take(last)
        except NotJson:
            kind = response.headers.get("Content-Type", "no content type")
            raise CloudRejected(
                f"the Nokē cloud at {self.host} answered /lock/ with something that is not "
                f"JSON (HTTP {response.status_code}, {kind})",
                status=response.status_code,
                transient=True,
            ) from None
        if batch:
            await into.add(self._listed_macs(batch, seen))
            seen += len(batch)
        if seen != entries:
            raise CloudRejected(
                f"the Nokē cloud at {self.host} answered /lock/ with an unexpected shape: "
                f"{entries - seen} of data.locks' {entries} entries have no mac",
                hint=_BUG_HINT,
            )
        return head

    def _listed_macs(self, batch: list[object], offset: int) -> list[MacAddress]:
        try:
            return _MACS.validate_python(batch)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            raise CloudRejected(
                f"the Nokē cloud at {self.host} answered /lock/ with an unexpected shape: "
                f"data.locks.{offset + int(first['loc'][0])}.mac ({first['msg'].lower()})",
                hint=_BUG_HINT,
            ) from None

    async def offline_keys(
        self, macs: Sequence[MacAddress] | None = None, *, issue_for: Sequence[str] = ()
    ) -> list[OfflineGrant]:
        """``/keys/``: every offline key the cloud lists for ``macs`` (None: all locks), after
        asking it to issue keys for the tracking keys in ``issue_for``. Retried when transient.
        """
        if issue_for:
            if not macs:
                raise UsageError(
                    "issuing offline keys needs the locks to issue them for",
                    hint="name them with --macs",
                )
            await self.issue_offline_keys(macs, issue_for)
        data = await self._listed_keys(macs)
        return [
            OfflineGrant(
                lock["mac"], key["tracking_key"], key["offline_key"], key["unlock_command"]
            )
            for lock in data.locks
            for key in lock.get("keys", ())
        ]

    async def listed_offline_keys(self, macs: Sequence[MacAddress]) -> ListedKeys:
        """``/keys/`` for ``macs``: every offline key the cloud lists for them, lock by lock (a
        fleet's sync, a chunk at a time). Retried when transient."""
        listed = ListedKeys()
        by_lock = listed.by_lock
        for lock in (await self._listed_keys(macs)).locks:
            keys = lock.get("keys")
            if keys:  # a lock listed twice keeps the keys of both entries, as grants would
                held = by_lock.setdefault(lock["mac"], {})
                for key in keys:
                    held[key["tracking_key"]] = (key["offline_key"], key["unlock_command"])
        return listed

    async def _listed_keys(self, macs: Sequence[MacAddress] | None) -> KeysData:
        display = KeysRequest(display=KeyScope(macs=list(macs)) if macs else None)
        return await with_retries(
            lambda: self._post_data("keys", display, KeysData, mac=_one(macs)), self._retry
        )

    async def issue_offline_keys(
        self, macs: Sequence[MacAddress], tracking_keys: Sequence[str]
    ) -> None:
        """``/keys/`` issue: a key for each tracking key on each lock (the cloud keeps a key
        already issued). Retried when transient: issuing again issues nothing new."""
        issue = KeysRequest(issue=[KeyScope(macs=list(macs), tracking_keys=list(tracking_keys))])
        await with_retries(lambda: self._post("keys", issue, mac=_one(macs)), self._retry)

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        """``/upload/``: hand the locks' server records over, grouped per (lock, session).

        ``idempotency_key`` (sent as the ``Idempotency-Key`` header) lets the cloud recognise a
        retry of a batch whose acknowledgement was lost. Transient failures are retried.
        Raises :class:`ConfigError` if no mobile key is configured (the route takes no other).
        Returns when the cloud acknowledged all of them (``error_code == 0``).
        """
        if self._mobile_key is None:
            raise ConfigError(
                "uploading lock logs to the Nokē cloud needs the mobile API key, "
                "and none is configured",
                hint="set mobile_key in the config file's [noke] section, or "
                "BLELOCK_NOKE__MOBILE_KEY",
            )
        if not records:
            return
        body = self.upload_body(records)
        macs = {record.lock_id for record in records}
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        await with_retries(
            lambda: self._post(
                "upload",
                body,
                mac=next(iter(macs)) if len(macs) == 1 else None,
                mobile=True,
                headers=extra,
            ),
            self._retry,
        )

    @staticmethod
    def upload_body(records: Sequence[LogRecord]) -> bytes:
        """The ``/upload/`` body of ``records``: grouped per (lock, session), as JSON bytes.

        The shape of :class:`~blelock.vendors.noke.models.UploadRequest`, byte for byte as its
        ``model_dump_json`` gives it (a batch resent after an upgrade must hash the same at the
        cloud), written with the C JSON encoder: building 500 pydantic models a batch cost the
        drain more than a third of what posting it costs."""
        groups: dict[tuple[str, str], list[LogRecord]] = {}
        for record in records:
            groups.setdefault((record.lock_id, record.context), []).append(record)
        logs = [
            {
                "session": session,
                "mac": mac,
                # Android keeps the first packet's time for the session (noke.md §7.1).
                "received_time": min(record.received_at for record in group),
                "responses": [record.payload for record in group],
            }
            for (mac, session), group in groups.items()
        ]
        return _COMPACT_JSON.encode({"logs": logs}).encode()

    async def revoke_offline_keys(
        self, macs: Sequence[MacAddress] | None = None, tracking_keys: Sequence[str] | None = None
    ) -> dict[MacAddress, int]:
        """``/keys/`` revoke, in the doc's three forms: some tracking keys on some locks, every
        key of some locks (``tracking_keys`` None), or some tracking keys on every lock
        (``macs`` None). Returns the keys each lock the cloud names still has.

        A revoked key goes on opening its lock until an online unlock of that lock carries the
        revocation (the lock only hears of it then)."""
        if not macs and not tracking_keys:
            raise UsageError(
                "revoking offline keys needs the locks, the tracking keys, or both",
                hint="name them with --macs and/or --tracking-key",
            )
        scope = KeyScope(
            macs=list(macs) if macs else None,
            tracking_keys=list(tracking_keys) if tracking_keys else None,
        )
        data = await self._post_data("keys", KeysRequest(revoke=[scope]), KeysData, mac=_one(macs))
        return {lock["mac"]: len(lock.get("keys", ())) for lock in data.locks}

    async def quick_clicks(self, macs: Sequence[MacAddress] | None = None) -> list[LockQuickClicks]:
        """``/qc/`` display: the quick clicks of these locks (None: every lock that has any)."""
        display = QuickClickDisplay(macs=list(macs) if macs is not None else None)
        return await self._qc(QuickClickRequest(display=display), _one(macs), ())

    async def issue_quick_clicks(
        self, mac: MacAddress, clicks: Sequence[tuple[SecretStr, int]]
    ) -> LockQuickClicks:
        """Issue (code, uses) quick clicks for one lock after checking every rule of the doc
        against what it holds now (:mod:`blelock.vendors.noke.quick_clicks`); the cloud checks
        again. They reach the lock with its next online unlock. Returns the lock's listing."""
        held = await self._held(mac)
        check_issue(mac, clicks, held)
        entry = QuickClickEntry(
            mac=mac, quick_clicks=[QuickClickSpec(code=code, uses=uses) for code, uses in clicks]
        )
        body = QuickClickRequest(issue=[entry], display=QuickClickDisplay(macs=[mac]))
        return await self._one_lock_qc(body, mac, [code for code, _ in clicks])

    async def revoke_quick_clicks(
        self, mac: MacAddress, codes: Sequence[SecretStr]
    ) -> LockQuickClicks:
        """Revoke quick clicks of one lock: they stay on the lock, and open it, until its next
        online unlock removes them. Returns the lock's listing."""
        held = await self._held(mac)
        check_revoke(mac, codes, held)
        entry = QuickClickEntry(mac=mac, quick_clicks=[QuickClickSpec(code=c) for c in codes])
        body = QuickClickRequest(revoke=[entry], display=QuickClickDisplay(macs=[mac]))
        return await self._one_lock_qc(body, mac, codes)

    async def activity(
        self,
        *,
        lock_macs: Sequence[MacAddress] | None = None,
        actions: Sequence[str] | None = None,
        tracking_keys: Sequence[str] | None = None,
        before: dt.datetime | None = None,
        after: dt.datetime | None = None,
    ) -> list[ActivityEntry]:
        """``/activity/``: the company's activity, narrowed by every filter given."""
        for name, moment in (("before", before), ("after", after)):
            if moment is not None and moment.tzinfo is None:
                raise UsageError(f"activity {name} needs a time zone (e.g. 2026-11-24T09:00Z)")
        if before is not None and after is not None and after > before:
            raise UsageError("activity after is later than before: no activity could match")
        body = ActivityRequest(
            lock_macs=list(lock_macs) if lock_macs else None,
            actions=list(actions) if actions else None,
            tracking_keys=list(tracking_keys) if tracking_keys else None,
            before=_instant(before),
            after=_instant(after),
        )
        envelope = await with_retries(
            lambda: self._post("activity", body, mac=_one(lock_macs)), self._retry
        )
        return _validate(ActivityData, envelope.data, "activity", self.host).activity

    # --- plumbing -------------------------------------------------------------------------

    async def _qc(
        self, body: QuickClickRequest, mac: MacAddress | None, codes: Sequence[SecretStr]
    ) -> list[LockQuickClicks]:
        envelope = await self._post("qc", body, mac=mac, redact=codes)
        data = envelope.data
        if data is None or data == {}:
            return []
        if not isinstance(data, list):
            _validate(LockQuickClicks, None, "qc", self.host)  # raises, naming the shape
        return [_validate(LockQuickClicks, item, "qc", self.host) for item in data]

    async def _held(self, mac: MacAddress) -> list[QuickClickState]:
        """What the lock holds now, as the cloud lists it (the rules are checked against it)."""
        return [
            qc
            for lock in await self.quick_clicks([mac])
            if lock.mac == mac
            for qc in lock.quick_clicks
        ]

    async def _one_lock_qc(
        self, body: QuickClickRequest, mac: MacAddress, codes: Sequence[SecretStr]
    ) -> LockQuickClicks:
        listed = [lock for lock in await self._qc(body, mac, codes) if lock.mac == mac]
        return listed[0] if listed else LockQuickClicks(mac=mac)

    async def _commands(
        self, route: str, mac: MacAddress, session_hex: str, tracking_key: str | None
    ) -> list[bytes]:
        body = UnlockRequest(mac=mac, session=session_hex, tracking_key=tracking_key)
        envelope = await self._post(route, body, mac=mac)
        data = _validate(CommandsData, envelope.data, route, self.host)
        return _packets(data.commands, route, self.host)

    async def _post_data(
        self, route: str, body: BaseModel, model: type[_ModelT], *, mac: str | None
    ) -> _ModelT:
        """The answer's ``data`` as ``model``, read in one pass from the answer's bytes (no dict
        tree of a bulk answer first). An answer that is no success is read by :meth:`_read`
        for the error it deserves; a success whose data does not fit is refused naming where."""
        response = await self._send(route, body, mobile=False, headers=None)
        misfit: ValidationError | None = None
        if response.is_success:
            try:
                typed = TypedEnvelope[model].model_validate_json(response.content)  # type: ignore[valid-type]
            except ValidationError as exc:
                misfit = exc
            else:
                if typed.ok:
                    data: _ModelT = typed.data
                    return data
        self._read(response, route, mac=mac, mobile=False)  # raises unless a success
        assert misfit is not None  # a success of the documented envelope, with data misfit
        raise _shape_error(misfit, route, self.host, in_data=False)

    async def _post(
        self,
        route: str,
        body: BaseModel | bytes,
        *,
        mac: str | None,
        mobile: bool = False,
        headers: Mapping[str, str] | None = None,
        redact: Sequence[SecretStr] = (),
    ) -> Envelope:
        response = await self._send(route, body, mobile=mobile, headers=headers)
        return self._read(response, route, mac=mac, mobile=mobile, redact=redact)

    async def _send(
        self,
        route: str,
        body: BaseModel | bytes,
        *,
        mobile: bool,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        if isinstance(body, BaseModel):
            body = body.model_dump_json(exclude_none=True).encode()
        sent = {**(headers or {}), **self._headers(mobile=mobile)}
        with map_http_errors(self.host):
            return await self._client.post(f"{route}/", content=body, headers=sent)

    def _headers(self, *, mobile: bool) -> dict[str, str]:
        key = self._mobile_key if mobile else self._api_key
        if key is None:  # upload() checks first; reaching here is a bug
            raise RuntimeError("no mobile API key for /upload/")
        return {
            "Authorization": f"Bearer {key.get_secret_value()}",
            "Content-Type": "application/json",
        }

    def _read(
        self,
        response: httpx.Response,
        route: str,
        *,
        mac: str | None,
        mobile: bool,
        redact: Sequence[SecretStr] = (),
    ) -> Envelope:
        try:
            answer = json_body(response)
        except AuthFailed as exc:
            if mobile:
                exc.hint = _MOBILE_KEY_HINT
            raise
        envelope = _validate(Envelope, answer, route, self.host)
        if not envelope.ok:
            said = envelope.message
            # A cloud may quote a quick-click code back. Longest first: a code that starts
            # another must not leave the longer one's tail behind.
            for code in sorted((s.get_secret_value() for s in redact), key=len, reverse=True):
                said = said.replace(code, "<code>")
            envelope = envelope.model_copy(update={"message": said})
            raise _envelope_error(envelope, route, self.host, mac, response.status_code)
        return envelope


def _secret(value: SecretStr | str) -> SecretStr:
    secret = value if isinstance(value, SecretStr) else SecretStr(value)
    if not secret.get_secret_value().strip():
        raise ConfigError(
            "a Nokē API key is empty",
            hint="set api_key / mobile_key in the config file's [noke] section or the environment",
        )
    return secret


def _instant(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one(macs: Sequence[MacAddress] | None) -> MacAddress | None:
    return macs[0] if macs is not None and len(macs) == 1 else None


def _validate(model: type[_ModelT], value: Any, route: str, host: str) -> _ModelT:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _shape_error(exc, route, host, in_data=model is not Envelope) from None


def _shape_error(exc: ValidationError, route: str, host: str, *, in_data: bool) -> CloudRejected:
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    if in_data:
        where = f"data.{where}" if first["loc"] else "data"
    return CloudRejected(
        f"the Nokē cloud at {host} answered /{route}/ with an unexpected shape: "
        f"{where} ({first['msg'].lower()})",
        hint=_BUG_HINT,
    )


def _envelope_error(
    envelope: Envelope, route: str, host: str, mac: str | None, status: int
) -> CloudRejected:
    code = envelope.error_code
    said = envelope.message.strip()[:_MAX_CLOUD_MESSAGE] or "no message"
    if code == 2:
        return AuthFailed(
            f"the Nokē cloud at {host} refused the API key for /{route}/: {said}",
            status=status,
            error_code=code,
            hint=_MOBILE_KEY_HINT if route == "upload" else None,
        )
    if code in (6, 7):
        which = f"lock {mac}" if mac else "a lock in the request"
        why = "not in your company" if code == 6 else "lock not found"
        return UnknownLock(
            f"the Nokē cloud at {host} does not know {which} ({why}: {said})",
            status=status,
            error_code=code,
            about_content=True,
        )
    if code == 3:
        return CloudRejected(
            f"the cloud says the request is malformed: {said} (/{route}/ at {host})",
            status=status,
            error_code=code,
            about_content=True,
            hint="check the lock's MAC; if it persists, " + _BUG_HINT,
        )
    hint = "the cloud has trouble on its side; try again later" if code == 1 else _BUG_HINT
    return CloudRejected(
        f"the Nokē cloud at {host} refused /{route}/ (error_code {code}, "
        f"result {envelope.result!r}): {said}",
        status=status,
        error_code=code,
        hint=hint,
    )


def _packets(commands: str, route: str, host: str) -> list[bytes]:
    try:
        return noke.split_commands(commands)
    except RemoteProtocolError as exc:
        raise CloudRejected(
            f"the Nokē cloud at {host} answered /{route}/ with a bad command string: {exc.message}",
            hint=_BUG_HINT,
        ) from None
