"""KeylessVisit over bleak and the simulated radio, against the simulated Keyless lock: open,
audit collection into the outbox with its cursor, refusals, two-visit re-keying, time update."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.config import Settings, load_settings
from blelock.errors import CloudUnavailable, LockRefused
from blelock.store.db import Database
from blelock.store.outbox import Outbox
from blelock.transport.ble import open_link
from blelock.transport.scan import find_lock
from blelock.vendors.keyless import protocol as kl
from blelock.vendors.keyless.plugin import PLUGIN as KEYLESS
from blelock.vendors.keyless.visit import (
    AUDIT_LOG,
    KeylessMaterial,
    KeylessVisit,
    StatementSource,
)
from simulators.keyless_lock import SimKeylessLock, ca_signer
from simulators.radio import Radio
from simulators.radio_server import RadioServer
from tests.conftest import FAST

HOUR = timedelta(hours=1)
LOCK_ID = "6f1c2a3e-8b7d-4c5e-9f00-112233445566"
DEVICE_ID = "0a0b0c0d-0e0f-4000-8000-000000000001"


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def now_utc(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Bench:
    lock: SimKeylessLock
    ca_key: ec.EllipticCurvePrivateKey
    ca_material: KeylessMaterial
    settings: Settings
    outbox: Outbox
    clock: FixedClock

    def credential(
        self,
        operations: frozenset[kl.Operation] = frozenset({kl.Operation.OPEN}),
        *,
        lock_key_id: bytes | None = None,
        not_after: datetime | None = None,
        kind: kl.GrantKind = kl.GrantKind.OPERATING,
        key_id: str | None = None,
    ) -> kl.Credential:
        holder = kl.generate_key()
        start, end = self.clock.now - HOUR, not_after or self.clock.now + HOUR
        if kl.Operation.UPDATE_TIME in operations:  # time keys: from their issue, for minutes
            start, end = self.clock.now, self.clock.now + timedelta(minutes=5)
        grant = kl.Grant(
            key_id=key_id or str(uuid.uuid4()),
            kind=kind,
            operating_device_id=DEVICE_ID if kind is kl.GrantKind.OPERATING else None,
            locking_device_id=LOCK_ID,
            operations=operations,
            not_before=start,
            not_after=end,
            lock_key_id=lock_key_id or self.lock.lock_key_id,
            holder_public_key=kl.public_key_bytes(holder.public_key()),
        )
        return kl.Credential(kl.sign_grant(grant, self.ca_key), holder)

    async def visit(
        self,
        *credentials: kl.Credential,
        pending: bytes | None = None,
        statements: StatementSource | None = None,
    ) -> KeylessVisit:
        found = await find_lock(LOCK_ID, self.settings, [KEYLESS])
        assert found.sighting.lock_id == LOCK_ID
        material = KeylessMaterial(
            self.ca_material.ca_certificate, credentials, pending_certificate=pending
        )
        return KeylessVisit(
            LOCK_ID,
            lambda: open_link(found.device, self.settings, name=found.sighting.name),
            material,
            self.settings.timeouts,
            self.outbox,
            self.clock,
            statements=statements,
        )


@pytest.fixture
async def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bench]:
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FixedClock(now)
    ca_key = kl.generate_key()
    ca_cert = kl.make_platform_ca(
        ca_key, name="test platform", not_before=now - 24 * HOUR, not_after=now + 900 * 24 * HOUR
    )
    lock = SimKeylessLock.provision(
        mac="D4:00:00:00:00:01",
        locking_device_id=LOCK_ID,
        ca_cert=ca_cert,
        sign_csr=ca_signer(ca_key, ca_cert, clock=lambda: clock.now),
        clock=lambda: clock.now,
    )
    radio = Radio(FAST)
    radio.add(lock)
    async with (
        await RadioServer.start(radio) as server,
        await Database.open(tmp_path / "blelock.db") as db,
    ):
        monkeypatch.setenv("BLELOCK_SIM_RADIO", server.address)
        settings = load_settings(
            environ={
                "BLELOCK_BLE_CLIENT_BACKEND": "simulators.bleak_backend:SimBleakClient",
                "BLELOCK_BLE_SCANNER_BACKEND": "simulators.bleak_backend:SimBleakScanner",
                "BLELOCK_SCAN_TIMEOUT": "2",
                "BLELOCK_COMMAND_TIMEOUT": "2",
            },
            read_file=False,
        )
        yield Bench(
            lock, ca_key, KeylessMaterial(ca_cert, ()), settings, Outbox(db, "keyless"), clock
        )


async def test_an_open_keeps_the_audit_entries_and_moves_the_cursor(bench: Bench) -> None:
    outcome = await (await bench.visit(bench.credential())).open()
    assert bench.lock.opens == 1 and outcome.key_id is not None
    kept = await bench.outbox.pending()
    assert outcome.audit_collected == len(kept) == 1
    assert kept[0].lock_id == LOCK_ID and kept[0].context == AUDIT_LOG
    assert await bench.outbox.cursor(LOCK_ID, AUDIT_LOG) == 1
    # The next visit asks only for what came after: one new entry, no repeat.
    await (await bench.visit(bench.credential())).open()
    assert len(await bench.outbox.pending()) == 2
    assert await bench.outbox.cursor(LOCK_ID, AUDIT_LOG) == 2


async def test_a_refusal_names_the_rule_and_its_entry_is_collected_next_time(
    bench: Bench,
) -> None:
    expired = bench.credential(not_after=bench.clock.now - timedelta(minutes=10))
    with pytest.raises(LockRefused) as caught:
        await (await bench.visit(expired)).open()
    assert caught.value.reason is kl.ResultCode.EXPIRED and caught.value.lock_id == LOCK_ID
    assert "EXPIRED" in caught.value.one_line() and "sync" in caught.value.one_line()
    assert bench.lock.opens == 0
    # The refusal stopped the conversation before collection; the entry waits in the lock.
    await (await bench.visit(bench.credential())).open()
    assert await bench.outbox.cursor(LOCK_ID, AUDIT_LOG) == 2
    assert len(await bench.outbox.pending()) == 2


async def test_re_keying_over_two_offline_visits(bench: Bench) -> None:
    old_key_id = bench.lock.lock_key_id
    first = await (await bench.visit(bench.credential())).open(rekey=True)
    assert first.csr is not None and bench.lock.pending_key is not None
    # Between the visits the platform certifies the CSR and issues an offline key pair.
    certificate = ca_signer(bench.ca_key, bench.ca_material.ca_certificate)(first.csr)
    new_key_id = kl.key_id_of(
        kl.verify_lock_certificate(
            certificate, bench.ca_material.ca_certificate, at=bench.clock.now
        ).public_key()  # type: ignore[arg-type]
    )
    offline_id = str(uuid.uuid4())
    primary = bench.credential(lock_key_id=new_key_id, kind=kl.GrantKind.OFFLINE, key_id=offline_id)
    alternative = bench.credential(
        lock_key_id=old_key_id, kind=kl.GrantKind.OFFLINE, key_id=offline_id
    )
    # Before the install the alternative still opens...
    await (await bench.visit(primary, alternative)).open()
    assert bench.lock.lock_key_id == old_key_id and bench.lock.opens == 2
    # ...and the visit that installs the certificate opens with the primary.
    second = await (await bench.visit(primary, alternative, pending=certificate)).open()
    assert second.certificate_installed == certificate
    assert bench.lock.lock_key_id == new_key_id and bench.lock.opens == 3
    with pytest.raises(LockRefused) as caught:  # keys bound to the old lock key are done
        await (await bench.visit(alternative)).open()
    assert caught.value.reason is kl.ResultCode.WRONG_LOCK_KEY


async def test_set_time_repairs_a_drifted_clock(bench: Bench) -> None:
    bench.lock.clock_drift_s = -3 * 3600
    with pytest.raises(LockRefused) as caught:
        await (await bench.visit(bench.credential())).open()
    assert caught.value.reason is kl.ResultCode.NOT_YET_VALID
    with pytest.raises(LockRefused):  # OPEN alone does not allow setting the time
        await (await bench.visit(bench.credential())).set_time()
    timer = bench.credential(frozenset({kl.Operation.UPDATE_TIME}))
    outcome = await (await bench.visit(timer)).set_time()
    assert outcome.time_set is not None and outcome.time_set[1] == bench.clock.now
    assert abs((bench.lock.now() - bench.clock.now).total_seconds()) < 2
    await (await bench.visit(bench.credential())).open()
    assert bench.lock.opens == 1


def _ahead_of_its_floor(bench: Bench) -> kl.Credential:
    """The lock runs an hour fast and has accepted a request at that time (its floor); an
    UPDATE_TIME key for setting it back to the true time."""
    bench.lock.clock_drift_s = 3600
    return bench.credential(not_after=bench.clock.now + 2 * HOUR)


class Statements:
    """A platform that answers a time statement, honestly or not; records the nonces asked."""

    def __init__(self, bench: Bench, *, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.bench, self.key, self.asked = bench, key or bench.ca_key, list[bytes]()
        self.nonce: bytes | None = None  # sign for this nonce instead of the one asked

    async def __call__(self, lock_id: str, nonce: bytes) -> bytes:
        self.asked.append(nonce)
        said = kl.TimeStatement(lock_id, self.nonce or nonce, self.bench.clock.now)
        return kl.sign_time_statement(said, self.key)


async def test_set_time_back_fetches_the_platform_statement_for_the_lock_nonce(
    bench: Bench,
) -> None:
    opener = _ahead_of_its_floor(bench)
    await (await bench.visit(opener)).open()
    timer = bench.credential(frozenset({kl.Operation.UPDATE_TIME}))
    platform = Statements(bench)
    outcome = await (await bench.visit(timer, statements=platform)).set_time()
    assert len(platform.asked) == 1  # once, mid-visit, for the nonce of the paused request
    assert outcome.time_set is not None and outcome.time_set[1] == bench.clock.now
    assert abs((bench.lock.now() - bench.clock.now).total_seconds()) < 2


@pytest.mark.parametrize("forgery", ["forged", "other nonce"])
async def test_a_forged_or_replayed_time_statement_is_refused_by_the_lock(
    bench: Bench, forgery: str
) -> None:
    await (await bench.visit(_ahead_of_its_floor(bench))).open()
    timer = bench.credential(frozenset({kl.Operation.UPDATE_TIME}))
    platform = Statements(bench, key=kl.generate_key() if forgery == "forged" else None)
    if forgery == "other nonce":
        platform.nonce = bytes(range(16))  # a genuine statement, for another request
    with pytest.raises(LockRefused) as caught:
        await (await bench.visit(timer, statements=platform)).set_time()
    assert caught.value.reason is kl.ResultCode.TIME_REFUSED and platform.asked
    assert abs((bench.lock.now() - bench.clock.now).total_seconds() - 3600) < 2


async def test_set_time_back_offline_fails_with_the_platform_hint_and_changes_nothing(
    bench: Bench,
) -> None:
    await (await bench.visit(_ahead_of_its_floor(bench))).open()
    timer = bench.credential(frozenset({kl.Operation.UPDATE_TIME}))

    async def unreachable(lock_id: str, nonce: bytes) -> bytes:
        raise CloudUnavailable("the Keyless platform cannot be reached")

    for statements in (None, unreachable):
        with pytest.raises(LockRefused) as caught:
            await (await bench.visit(timer, statements=statements)).set_time()
        assert caught.value.reason is kl.ResultCode.TIME_REFUSED
        assert caught.value.hint is not None and "needs the platform" in caught.value.hint
        assert "while online" in caught.value.hint
        assert abs((bench.lock.now() - bench.clock.now).total_seconds() - 3600) < 2
