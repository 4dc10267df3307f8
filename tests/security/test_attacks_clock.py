"""Attack 4 (issue 19, high): clock rollback revives expired grants. UPDATE_TIME keys were valid
from the permission's start for days and the lock's floor was only the oldest accepted
not_before - 300 s, so winding the lock's clock back made an expired grant open. Closed: time
keys are valid from their issue for minutes, the lock's floor rises to its own time on every
accepted request, and going back further than the tolerance needs a platform-signed time
statement bound to the lock's nonce."""

from __future__ import annotations

import base64
import datetime as dt

from blelock.vendors.keyless import protocol as kl
from tests.security._kit import (
    T0,
    b64,
    conversation,
    credential,
    platform,
    run,
    send,
    standalone_lock,
)

DAY = dt.timedelta(days=1)
TIME = frozenset({kl.Operation.UPDATE_TIME})


def test_winding_the_clock_back_does_not_revive_an_expired_grant() -> None:
    lock = standalone_lock()
    expired = credential(lock, not_before=T0 - 2 * DAY, not_after=T0 - DAY)
    # What the platform used to issue for UPDATE_TIME: valid from the permission's start, days.
    long_time_key = credential(lock, operations=TIME, not_before=T0 - 3 * DAY, not_after=T0 + DAY)
    # An operating key as the platform issues them: from the permission's start, days ago.
    honest = credential(lock, not_before=T0 - 3 * DAY, not_after=T0 + DAY)
    run(lock, conversation(lock, [honest], [kl.Open()], at=T0))  # the lock saw T0
    back = T0 - DAY - dt.timedelta(hours=12)
    events = run(lock, conversation(lock, [long_time_key], [kl.SetTime(back)], at=T0))
    assert any(isinstance(e, kl.Refused) for e in events)
    assert abs((lock.now() - T0).total_seconds()) < 5
    # Even a short time key issued back then cannot go back past the floor (the lock's own time).
    then = T0 - DAY - dt.timedelta(hours=12)
    old_short = credential(
        lock, operations=TIME, not_before=then, not_after=then + dt.timedelta(minutes=10)
    )
    events = run(lock, conversation(lock, [old_short], [kl.SetTime(then)], at=T0))
    assert kl.Refused(kl.Command.UPDATE_TIME, kl.ResultCode.TIME_REFUSED) in events
    refused = run(lock, conversation(lock, [expired], [kl.Open()], at=T0))
    assert kl.Refused(kl.Command.OPEN, kl.ResultCode.EXPIRED) in refused
    assert lock.opens == 1


async def test_platform_time_keys_are_short_and_going_back_needs_its_statement() -> None:
    async with platform() as rig:
        lock = rig.lock(clock_drift_s=3600)  # the lock runs an hour fast
        lock_id = lock.locking_device_id
        key = kl.generate_key()
        user = await rig.user()
        _, token = await rig.device(user, key)
        await rig.permission(user, lock_id, operation="UPDATE_TIME", start=T0 - 3 * DAY)
        await rig.permission(user, lock_id, operation="OPEN")
        everything = await rig.operating_credentials(token, key, lock_id)
        platform_key = rig.state.platform_key.public_key()
        by_grant = [(c, kl.verify_grant(c.grant, platform_key)) for c in everything]
        opening = [c for c, g in by_grant if kl.Operation.OPEN in g.operations]
        credentials = [c for c, g in by_grant if kl.Operation.UPDATE_TIME in g.operations]
        grants = [g for _, g in by_grant if kl.Operation.UPDATE_TIME in g.operations]
        assert grants and all(g.not_before == T0 for g in grants)
        assert all(
            (g.not_after - g.not_before).total_seconds() <= kl.LIMITS.time_grant_validity_s
            for g in grants
        )
        # A kiosk whose own clock is two days behind cannot set it: the key is not valid then.
        events = run(lock, conversation(lock, credentials, [kl.SetTime(T0 - 2 * DAY)], at=T0))
        assert kl.Refused(kl.Command.UPDATE_TIME, kl.ResultCode.NOT_YET_VALID) in events
        run(lock, conversation(lock, opening, [kl.Open()], at=T0))  # accepted: floor = T0+1h
        # Back an hour to the true time: more than the tolerance below the floor.
        events = run(lock, conversation(lock, credentials, [kl.SetTime(T0)], at=T0))
        assert kl.Refused(kl.Command.UPDATE_TIME, kl.ResultCode.TIME_REFUSED) in events

        credential_, grant = credentials[0], grants[0]
        lock.on_connect()
        challenge = send(lock, kl.encode_hello())
        assert isinstance(challenge, kl.Challenge)
        path = f"/mobile/locking-device/{lock_id}/time-statement"
        answer = await rig.mobile("POST", path, token, json={"nonce": b64(challenge.nonce)})
        assert answer.status_code == 200, answer.text
        statement = base64.b64decode(answer.json()["statement"])
        # A statement for another nonce does not help; the right one does.
        stale = await rig.mobile("POST", path, token, json={"nonce": b64(bytes(16))})
        wrong = base64.b64decode(stale.json()["statement"])
        request = kl.encode_request(
            credential_, grant, command=kl.Command.UPDATE_TIME, nonce=challenge.nonce,
            argument=kl.time_argument(T0, wrong),
        )  # fmt: skip
        result = send(lock, request)
        assert isinstance(result, kl.Result) and result.code is kl.ResultCode.TIME_REFUSED
        request = kl.encode_request(
            credential_, grant, command=kl.Command.UPDATE_TIME, nonce=result.next_nonce,
            argument=kl.time_argument(T0, statement),
        )  # fmt: skip
        result = send(lock, request)
        assert isinstance(result, kl.Result) and result.code is kl.ResultCode.TIME_REFUSED
        lock.on_disconnect()
        # The statement is bound to the nonce it was asked for: only a fresh one, once, works.
        lock.on_connect()
        challenge = send(lock, kl.encode_hello())
        assert isinstance(challenge, kl.Challenge)
        answer = await rig.mobile("POST", path, token, json={"nonce": b64(challenge.nonce)})
        statement = base64.b64decode(answer.json()["statement"])
        request = kl.encode_request(
            credential_, grant, command=kl.Command.UPDATE_TIME, nonce=challenge.nonce,
            argument=kl.time_argument(T0, statement),
        )  # fmt: skip
        result = send(lock, request)
        lock.on_disconnect()
        assert isinstance(result, kl.Result) and result.code is kl.ResultCode.OK
        assert abs((lock.now() - T0).total_seconds()) < 5


def test_the_conversation_pauses_for_a_statement_bound_to_the_lock_nonce() -> None:
    from tests.security._kit import CA_KEY

    lock = standalone_lock(clock_drift_s=3600)  # an hour fast
    opener = credential(lock, not_after=T0 + 2 * DAY)
    run(lock, conversation(lock, [opener], [kl.Open()], at=T0))  # floor: T0 + 1 h
    timer = credential(lock, operations=TIME, not_before=T0, not_after=T0 + dt.timedelta(minutes=5))
    conv = conversation(lock, [timer], [kl.SetTime(T0)], at=T0)
    run(lock, conv, statement=None)  # stops at the pause, before any UPDATE_TIME went out
    needed = [e for e in conv.events if isinstance(e, kl.StatementNeeded)]
    assert len(needed) == 1 and conv.awaiting_statement and conv.next_action() is None
    assert needed[0].locking_device_id == lock.locking_device_id
    # Continued on the same connection (the kit's run() disconnected: that nonce is gone, so
    # this drives the lock by hand over one connection).
    lock.on_connect()
    lock.on_subscribe(kl.NOTIFY_UUID, True)
    conv = conversation(lock, [timer], [kl.SetTime(T0)], at=T0)
    inbox: list[bytes] = []

    def step() -> None:
        while (action := conv.next_action()) is not None:
            if isinstance(action, kl.Write):
                inbox.extend(v for _, v in lock.on_write(kl.WRITE_UUID, action.data))
            else:
                conv.receive(inbox.pop(0))

    step()
    nonce = next(e for e in conv.events if isinstance(e, kl.StatementNeeded)).nonce
    conv.provide_statement(
        kl.sign_time_statement(kl.TimeStatement(lock.locking_device_id, nonce, T0), CA_KEY)
    )
    step()
    lock.on_disconnect()
    assert any(isinstance(e, kl.TimeSet) for e in conv.events) and conv.done
    assert abs((lock.now() - T0).total_seconds()) < 5
