"""Refusals a mutation run found untested: wrong lengths are refused by name."""

from __future__ import annotations

import pytest

from blelock.errors import RemoteProtocolError
from blelock.vendors.noke import protocol as noke


@pytest.mark.parametrize("size", [19, 21])
def test_a_noke_notification_of_the_wrong_length_is_refused_by_name(size: int) -> None:
    valid = noke.answer(noke.ResultCode.SUCCESS)
    assert len(valid) == 20 and noke.decode_notification(valid) is not None
    data = (valid + bytes(1))[:size]
    with pytest.raises(RemoteProtocolError, match="notification") as caught:
        noke.decode_notification(data)
    assert str(size) in caught.value.message and "20" in caught.value.message
