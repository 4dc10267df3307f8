"""Attack 5 (issue 19, medium): Nokē revocations stripped from a batch. The batch-order check
applied only once a batch had started, so a companion could send just the last packet (UNLOCK)
of [REMOVE, REMOVE, UNLOCK]: the lock opened and the revoked offline slot kept working. Closed:
each packet's position and its batch's total are sealed in its body; a batch starts only at
position 0."""

from __future__ import annotations

from blelock.vendors.noke import protocol as noke
from simulators.noke_lock import SimNokeLock

KEY = bytes(range(16))
NOW = 1_700_000_000


def _session(lock: SimNokeLock) -> bytes:
    lock.on_connect()
    lock.on_subscribe(noke.NOTIFY_UUID, True)
    return lock.on_read(noke.SESSION_UUID)


def _results(notes: list[tuple[str, bytes]]) -> list[int]:
    return [value[1] for _, value in notes if value[0] == noke.Destination.APP]


def _batch(lock: SimNokeLock, session: bytes) -> list[bytes]:
    text = noke.cloud_command_string(
        lock.key, session, "unlock", unix_time=NOW, batch_id=7, setup=False, revoke_slots=(3, 4)
    )
    return noke.split_commands(text)


def test_the_unlock_alone_of_a_batch_with_revocations_is_refused() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:19:05", key=KEY)
    session = _session(lock)
    *removals, unlock = _batch(lock, session)
    assert len(removals) == 2
    assert _results(lock.on_write(noke.WRITE_UUID, unlock)) == [noke.ResultCode.INVALID_DATA]
    assert lock.unlocks == 0 and lock.state != "unlocked" and lock.revoked_slots == set()
    # The same batch whole, in order: revocations first, then the lock opens.
    session = _session(lock)
    notes = [n for packet in _batch(lock, session) for n in lock.on_write(noke.WRITE_UUID, packet)]
    assert _results(notes) == [noke.ResultCode.SUCCESS] * 3 + [noke.ResultCode.SHUTDOWN]
    assert lock.revoked_slots == {3, 4} and lock.unlocks == 1


def test_a_batch_cannot_skip_a_packet_or_start_in_the_middle() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:19:05", key=KEY)
    session = _session(lock)
    first, second, unlock = _batch(lock, session)
    assert _results(lock.on_write(noke.WRITE_UUID, second)) == [noke.ResultCode.INVALID_DATA]
    assert _results(lock.on_write(noke.WRITE_UUID, first)) == [noke.ResultCode.SUCCESS]
    assert _results(lock.on_write(noke.WRITE_UUID, unlock)) == [noke.ResultCode.INVALID_DATA]
    assert lock.unlocks == 0 and lock.revoked_slots == {3}
