"""A fleet's ``/lock/`` listing is streamed, never held whole: its MACs reach the store in
bounded batches while the answer is still arriving, and what is alive meanwhile stays far
below the answer's size. The envelope is still checked, after the data it may follow."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from blelock.cloud._http import RetryPolicy
from blelock.errors import AuthFailed, CloudRejected
from blelock.model import MacAddress
from blelock.vendors.noke.cloud import NokeCloud

FLEET = 12_000
ENTRY = {
    "created_by": "admin@example.com",
    "created_date": "2024-05-01T10:00:00Z",
    "setup_count": 1,
    "hw_version": "3E",
    "fw_version": "3.5.0",
    "serial": "N3E0001234",
    "name": "unit",
}


def mac(i: int) -> str:
    return f"D0:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}:00:01"


class Listing:
    """A ``/lock/`` answer made piece by piece as httpx reads it; counts what it sent."""

    def __init__(self, locks: int, *, envelope_last: str = '"result": "success", "error_code": 0'):
        self.locks = locks
        self.tail = envelope_last
        self.sent = 0

    async def pieces(self) -> AsyncIterator[bytes]:
        yield b'{"data": {"locks": ['
        for start in range(0, self.locks, 50):
            piece = ", ".join(
                json.dumps({"mac": mac(i), **ENTRY})
                for i in range(start, min(start + 50, self.locks))
            )
            self.sent += len(piece)
            yield (", " if start else "").encode() + piece.encode()
        yield (']}, "message": "", ' + self.tail + "}").encode()


class Counted:
    """A sink that keeps nothing but counts: what it is handed is all the listing keeps."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        self.count = self.largest = self.restarts = 0
        self.sent_at_first: int | None = None
        self.last: MacAddress | None = None

    async def restart(self) -> None:
        self.restarts += 1
        self.count = 0

    async def add(self, macs: Sequence[MacAddress]) -> None:
        if self.sent_at_first is None:
            self.sent_at_first = self.listing.sent
        self.count += len(macs)
        self.largest = max(self.largest, len(macs))
        self.last = macs[-1]


def cloud_over(listing: Listing) -> NokeCloud:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/lock/"
        return httpx.Response(200, content=listing.pieces())

    return NokeCloud("http://noke.test/", "server-key", transport=httpx.MockTransport(answer))


async def test_the_listing_reaches_the_sink_in_batches_while_it_arrives() -> None:
    listing = Listing(FLEET)
    sink = Counted(listing)
    async with cloud_over(listing) as cloud:
        tracemalloc.start()
        try:
            await cloud.list_lock_macs(sink)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (sink.count, sink.restarts, sink.last) == (FLEET, 1, MacAddress(mac(FLEET - 1)))
    assert sink.largest <= 5000
    # The first MACs were handed on when less than half of the answer had been sent...
    assert sink.sent_at_first is not None and sink.sent_at_first < listing.sent / 2
    # ...and what was alive at the peak is a fraction of the answer (~3 MB here): the answer,
    # its parsed entries and the MAC list are never there whole.
    assert peak < listing.sent / 3, (peak, listing.sent)


async def test_a_failure_envelope_after_the_data_is_refused() -> None:
    listing = Listing(10, envelope_last='"result": "failure", "error_code": 2')
    async with cloud_over(listing) as cloud:
        with pytest.raises(AuthFailed):
            await cloud.list_lock_macs(Counted(listing))


def cloud_answering(body: Sequence[bytes]) -> NokeCloud:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in body:
            yield piece

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=pieces())

    return NokeCloud(
        "http://noke.test/",
        "k",
        transport=httpx.MockTransport(answer),
        retry=RetryPolicy(attempts=1),
    )


@pytest.mark.parametrize(
    ("locks", "named"),
    [
        (b'[{"mac": "D0:00:00:00:00:01"}, {"mac": "not a mac"}]', r"data\.locks\.1\.mac"),
        (b'[{"mac": "D0:00:00:00:00:01"}, {"serial": "x"}]', "1 of data.locks' 2 entries"),
    ],
)
async def test_an_entry_without_a_mac_or_with_a_bad_one_is_refused(
    locks: bytes, named: str
) -> None:
    body = [b'{"result": "success", "error_code": 0, "data": {"locks": ', locks, b"}}"]
    async with cloud_answering(body) as cloud:
        with pytest.raises(CloudRejected, match=named):
            await cloud.list_lock_macs(Counted(Listing(0)))


async def test_a_cut_answer_is_refused_as_not_json() -> None:
    async with cloud_answering([b'{"result": "success", "data": {"locks": [{"mac": "D0']) as cloud:
        with pytest.raises(CloudRejected, match="not JSON"):
            await cloud.list_lock_macs(Counted(Listing(0)))
