"""Unloc is a plugin with no adverts and no operations: the seam takes it without any of the
code above it treating it as a vendor of locks to open."""

from __future__ import annotations

import pytest

from blelock import jobs, vendors
from blelock.errors import UsageError
from blelock.vendors.base import VendorPlugin

UUID = "7f4667c0-ee58-11f1-9fe7-02fc00000001"


def test_it_is_registered_cloud_only() -> None:
    unloc = vendors.plugin("unloc")
    assert isinstance(unloc, VendorPlugin) and unloc.title == "Unloc"
    assert tuple(unloc.service_uuids) == () and dict(unloc.operations) == {}
    assert unloc.default_operation is None and unloc.phone_keys is True
    assert unloc.cli_module == "blelock.vendors.unloc.cli"


def test_it_is_never_a_candidate_owner_of_a_lock_to_open() -> None:
    owners = [plugin.name for plugin, _ in jobs.candidates(UUID)]
    assert owners == ["keyless"]  # a UUID is a Keyless id; Unloc's are too, but it opens none
    with pytest.raises(UsageError, match="malformed MAC"):
        jobs.candidates("not-a-lock", "unlock")  # the refusal of a vendor that opens locks


async def test_naming_it_for_an_operation_says_its_app_opens_the_lock() -> None:
    from blelock.config import load_settings

    with pytest.raises(UsageError) as caught:
        await jobs.resolve(UUID, load_settings(environ={}, read_file=False), vendor="unloc")
    assert "opened with the Unloc app" in caught.value.one_line()
    assert "blelock unloc keys issue" in caught.value.one_line()
