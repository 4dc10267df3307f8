"""`blelock-sim --bluez` as a process, and `blelock` processes that name no bleak backend: the
Raspberry Pi's arrangement, with the emulated BlueZ in place of bluetoothd."""

from __future__ import annotations

import json
import subprocess
import sys

from simulators.process import simulator_process
from tests.bluez.conftest import need_dbus
from tests.e2e.conftest import cli_environment


def test_blelock_sim_bluez_serves_a_plain_blelock() -> None:
    need_dbus()
    with simulator_process(
        *("--bluez", "--locks", "2", "--seed", "9", "--adv-ms", "10", "--connect-ms", "5"),
        *("--interval-ms", "2", "--write-rtt-ms", "2", "--bluez-fault", "abort-by-local=1"),
    ) as announced:
        env = announced["env"]
        assert env["DBUS_SYSTEM_BUS_ADDRESS"].startswith("unix:path=")
        assert not any("BACKEND" in name or name == "BLELOCK_SIM_RADIO" for name in env)

        def blelock(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "blelock", "--json", *args],
                capture_output=True,
                text=True,
                env=cli_environment(**env, BLELOCK_SCAN_TIMEOUT="3"),
                timeout=60,
            )

        scanned = blelock("scan", "--seconds", "1")
        assert scanned.returncode == 0, scanned.stderr
        macs = {lock["mac"] for lock in announced["locks"]}
        assert {row["lock_id"] for row in json.loads(scanned.stdout)} == macs
        opened = blelock("unlock", announced["locks"][0]["mac"])
        assert opened.returncode == 0, opened.stderr
        assert json.loads(opened.stdout)["results"][0]["opened"]
