"""Attack 3 (issue 19, high): revocation undone by pruning. The platform dropped a revoked key
from its list once its not_after passed, without a new version; the lock replaced its list
wholesale and still accepted a grant up to not_after + tolerance by its own clock, so a slow
lock opened for the revoked technician again. Closed: the platform keeps revoked ids until
not_after + tolerance + maximum drift and bumps the version on every change; the lock merges
lists and prunes by its own clock."""

from __future__ import annotations

import datetime as dt

from blelock.vendors.keyless import protocol as kl
from tests.security._kit import T0, conversation, platform, run


async def test_a_slow_lock_keeps_refusing_a_revoked_technician_after_the_list_is_pruned() -> None:
    async with platform() as rig:
        lock = rig.lock()
        lock_id = lock.locking_device_id
        fired_key, other_key, honest_key = kl.generate_key(), kl.generate_key(), kl.generate_key()
        fired, other, honest = await rig.user(), await rig.user(), await rig.user()
        _, fired_token = await rig.device(fired, fired_key)
        _, other_token = await rig.device(other, other_key)
        _, honest_token = await rig.device(honest, honest_key)
        fired_permission = await rig.permission(fired, lock_id, end=T0 + dt.timedelta(minutes=30))
        other_permission = await rig.permission(other, lock_id)
        await rig.permission(honest, lock_id, end=T0 + dt.timedelta(days=60))
        fired_credentials = await rig.operating_credentials(fired_token, fired_key, lock_id)
        await rig.operating_credentials(other_token, other_key, lock_id)

        # The technician is fired: the honest companion carries the list to the lock.
        await rig.admin_ok("DELETE", f"/permission/{fired_permission}", 204)
        honest_credentials = await rig.operating_credentials(honest_token, honest_key, lock_id)
        first = await rig.revocations(honest_token)
        run(lock, conversation(lock, honest_credentials, [kl.Open()], at=T0, revocations=first))
        refused = run(lock, conversation(lock, fired_credentials, [kl.Open()], at=T0))
        assert kl.Refused(kl.Command.OPEN, kl.ResultCode.REVOKED) in refused

        # The platform's clock passes the revoked key's not_after; another revocation follows.
        rig.clock.advance(minutes=40)  # (within the tokens' hour)
        await rig.admin_ok("DELETE", f"/permission/{other_permission}", 204)
        honest_credentials = await rig.operating_credentials(honest_token, honest_key, lock_id)
        second = await rig.revocations(honest_token)
        lock.clock_drift_s = -500  # the lock runs slow: its clock is 100 s past not_after
        at = rig.clock.now
        run(lock, conversation(lock, honest_credentials, [kl.Open()], at=at, revocations=second))
        opens = lock.opens
        attempt = run(lock, conversation(lock, fired_credentials, [kl.Open()], at=at))
        assert kl.Refused(kl.Command.OPEN, kl.ResultCode.REVOKED) in attempt
        assert lock.opens == opens


async def test_one_version_is_one_list_and_pruning_makes_a_new_version() -> None:
    async with platform() as rig:
        state = rig.state
        until = T0 + dt.timedelta(hours=1)
        state.revoke_keys([("11111111-1111-4111-8111-111111111111", until)])
        before = state.revocation_list()
        margin = kl.LIMITS.clock_tolerance_s + kl.LIMITS.max_clock_drift_s
        rig.clock.advance(hours=1, seconds=margin - 1)
        assert state.revocation_list() == before  # still needed by a slow lock
        rig.clock.advance(seconds=2)
        pruned = state.revocation_list()
        assert pruned.key_ids == frozenset() and pruned.version > before.version
        assert state.revocation_list() == pruned


def test_the_lock_merges_lists_and_prunes_by_its_own_clock() -> None:
    from tests.security._kit import CA_KEY, ManualClock, credential, standalone_lock

    clock = ManualClock(T0)
    lock = standalone_lock(clock)
    victim = credential(lock, not_after=T0 + dt.timedelta(hours=2))
    key_id = kl.verify_grant(victim.grant, CA_KEY.public_key()).key_id
    listed = kl.RevocationList(1, frozenset({key_id}), {key_id: T0 + dt.timedelta(hours=2)})
    later = kl.RevocationList(2, frozenset())  # a newer list that no longer names it
    for revocations in (listed, later):
        blob = kl.sign_revocation_list(revocations, CA_KEY)
        run(lock, conversation(lock, [credential(lock)], [kl.Open()], at=T0, revocations=blob))
    assert key_id in lock.revocations.key_ids and lock.revocations.version == 2
    refused = run(lock, conversation(lock, [victim], [kl.Open()], at=T0))
    assert kl.Refused(kl.Command.OPEN, kl.ResultCode.REVOKED) in refused
    clock.advance(hours=2, seconds=kl.LIMITS.clock_tolerance_s + 1)
    fresh = kl.sign_revocation_list(kl.RevocationList(3, frozenset()), CA_KEY)
    late = credential(lock, not_before=clock.now, not_after=clock.now + dt.timedelta(hours=1))
    run(lock, conversation(lock, [late], [kl.Open()], at=clock.now, revocations=fresh))
    assert key_id not in lock.revocations.key_ids  # its grant is expired by the lock's clock
