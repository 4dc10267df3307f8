"""A holder's code is named in the clear item columns only by a keyed tag: after a reconcile
wrote the item rows, nothing in the store's files is a digest that can be computed from the
code without the data key (a 6-digit code is 531,441 guesses, a second's work)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

from blelock.access.reconcile import Reconciler
from blelock.access.store import GrantStore
from blelock.config import Settings
from blelock.grants import Code, Item, Target
from blelock.vendors.noke.grants import QUICK_CLICK, NokeAccess
from blelock.vendors.nuki.grants import KEYPAD_CODE, NukiAccess
from tests.access._fake import FakeAccess, FakeCloud, FakePlugin, SteppedClock
from tests.access.test_reconcile import grant, no_context

PIN = "493817"
NUKI_LOCK, NOKE_MAC = "17890123", "C0:11:22:33:44:55"


class VendorRefs(FakeAccess):
    """The fake vendor, whose items also carry what Nuki's and Nokē's items store for the code
    (their real ``items``), so the store writes those natives into its item rows."""

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        pin = target.holder.codes["fake_pin"]

        def native(access: Any, lock_id: str, name: str) -> Any:
            holder = replace(target.holder, codes={name: pin})
            other = replace(target, lock=replace(target.lock, lock_id=lock_id), holder=holder)
            (item,) = [i for i in access.items(other, span_from, span_to) if "code" in i.native]
            return item.native["code"]

        nuki = native(NukiAccess(), NUKI_LOCK, KEYPAD_CODE)
        noke = native(NokeAccess(), NOKE_MAC, QUICK_CLICK)
        return [
            replace(item, native={**item.native, "nuki": nuki, "noke": noke})
            for item in super().items(target, span_from, span_to)
        ]


def unkeyed(code: str) -> list[str]:
    """The digests the vendors stored before code tags: computable from lock and code alone."""
    return [
        "code:" + hashlib.sha256(f"{NUKI_LOCK}|{code}".encode()).hexdigest()[:20],
        "qc:" + hashlib.sha256(f"{NOKE_MAC}|{code}".encode()).hexdigest()[:20],
    ]


async def test_no_item_row_holds_a_digest_of_the_code_that_can_be_guessed_without_the_key(
    grants: GrantStore, cloud: FakeCloud, settings: Settings, clock: SteppedClock
) -> None:
    access = VendorRefs(cloud, codes=True)
    pins = FakePlugin(access)
    gid = await grant(grants, pins, settings, clock, codes={"fake_pin": Code(PIN)})
    report = await Reconciler(grants, {"fake": pins}, no_context, clock, owner="r1").run()
    assert report.applied == 1 and list(cloud.pins.values()) == [PIN]

    record = await grants.get(gid)
    assert record is not None
    (row,) = record.items
    item = row.item
    assert str(item.native["nuki"]).startswith("code:")
    assert str(item.native["noke"]).startswith("qc:")

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in Path(settings.store_dir).iterdir() if p.is_file())

    on_disk = await asyncio.to_thread(files)
    assert str(item.native["nuki"]).encode() in on_disk  # the rows were written
    assert PIN.encode() not in on_disk
    for digest in unkeyed(PIN):
        assert digest.encode() not in on_disk

    # What an attacker with the rows would do: every 6-digit code of 1-9 under the old formula.
    stored = {str(item.native["nuki"]), str(item.native["noke"])}
    found = [
        code
        for digits in itertools.product("123456789", repeat=6)
        if stored & set(unkeyed(code := "".join(digits)))
    ]
    assert found == []

    # The tag is the same at every later turn: nothing looks changed, nothing is re-applied.
    clock.advance(days=1, seconds=1)  # the grant's next look (a day ahead)
    again = await Reconciler(grants, {"fake": pins}, no_context, clock, owner="r2").run()
    assert again.grants == 1 and again.changed == 0 and len(cloud.objects) == 1
    later = await grants.get(gid)
    assert later is not None and [r.item.native for r in later.items] == [item.native]
    assert await fresh_natives(grants, access, clock.now + dt.timedelta(days=1)) == [item.native]


async def fresh_natives(grants: GrantStore, access: FakeAccess, now: dt.datetime) -> list[Any]:
    """The natives a later turn computes for the grant, from its codes as the store opens them."""
    from blelock.access.reconcile import effective_target

    (leased,) = await grants.lease("check", now, 1, 10)
    target = effective_target(leased, leased.targets[0].plan)
    return [i.native for i in access.items(target, now - dt.timedelta(days=2), now)]


def test_a_code_without_its_tag_is_refused_not_digested_unkeyed() -> None:
    import pytest

    from blelock.vendors.nuki.grants import code_ref

    with pytest.raises(RuntimeError, match="internal error: a holder's code has no key tag"):
        code_ref(NUKI_LOCK, Code(PIN))
