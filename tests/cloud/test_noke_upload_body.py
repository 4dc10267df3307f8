"""The ``/upload/`` body is the documented shape, byte for byte what the pydantic model of it
writes: a batch leased before an upgrade and resent after it must hash the same at the cloud,
which refuses a reused Idempotency-Key with a different body."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from blelock.model import LogRecord
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.models import UploadLog, UploadRequest

# Any text JSON can carry (lone surrogates cannot be written as UTF-8 at all).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
RECORDS = st.lists(
    st.builds(
        LogRecord,
        st.sampled_from(["C7:E6:B0:C6:75:38", "C7:E6:B0:00:00:01", 'odd "mac"\\\n']),
        st.one_of(st.sampled_from(["s1", "s2"]), TEXT),
        st.integers(min_value=0, max_value=2**40),
        st.one_of(st.just("50" + "ab" * 19), TEXT),
    ),
    max_size=30,
)


def by_the_model(records: list[LogRecord]) -> bytes:
    groups: dict[tuple[str, str], list[LogRecord]] = {}
    for record in records:
        groups.setdefault((record.lock_id, record.context), []).append(record)
    request = UploadRequest(
        logs=[
            UploadLog(
                session=session,
                mac=mac,  # type: ignore[arg-type]
                received_time=min(r.received_at for r in group),
                responses=[r.payload for r in group],
            )
            for (mac, session), group in groups.items()
        ]
    )
    return request.model_dump_json(exclude_none=True).encode()


@given(RECORDS)
def test_upload_body_is_the_models_json_byte_for_byte(records: list[LogRecord]) -> None:
    assert NokeCloud.upload_body(records) == by_the_model(records)


def test_upload_body_groups_per_lock_and_session_in_first_seen_order() -> None:
    records = [
        LogRecord("C7:E6:B0:C6:75:38", "s1", 12, "50aa"),
        LogRecord("C7:E6:B0:C6:75:38", "s2", 30, "50bb"),
        LogRecord("C7:E6:B0:C6:75:38", "s1", 10, "50cc"),
    ]
    assert json.loads(NokeCloud.upload_body(records)) == {
        "logs": [
            {
                "session": "s1",
                "mac": records[0].lock_id,
                "received_time": 10,
                "responses": ["50aa", "50cc"],
            },
            {
                "session": "s2",
                "mac": records[0].lock_id,
                "received_time": 30,
                "responses": ["50bb"],
            },
        ]
    }
