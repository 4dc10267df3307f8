"""An operation's budget holds the upload that follows an online visit: a lock that opened is
never followed by the job timing out because the cloud was slow to take the records."""

from __future__ import annotations

from blelock.config import load_settings
from blelock.vendors.base import OperationSpec


def test_a_slower_cloud_widens_the_visit_budget_by_as_much() -> None:
    spec = OperationSpec("unlock", "open it")
    quick = load_settings(None, {"BLELOCK_CLOUD_TIMEOUT": "10"}, read_file=False)
    slow = load_settings(None, {"BLELOCK_CLOUD_TIMEOUT": "40"}, read_file=False)
    assert spec.budget(slow) - spec.budget(quick) == 30.0
    # The budget still holds the scan and the visit themselves.
    t = quick.timeouts
    assert spec.budget(quick) >= t.scan + t.visit + t.cloud


def test_an_operation_with_its_own_budget_keeps_it() -> None:
    spec = OperationSpec("firmware-update", "update", budget_s=900.0)
    slow = load_settings(None, {"BLELOCK_CLOUD_TIMEOUT": "40"}, read_file=False)
    assert spec.budget(slow) == 900.0
