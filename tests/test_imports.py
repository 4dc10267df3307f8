"""Cold start: `blelock --version` and `import blelock.cli` load none of the heavy libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import fresh_python

HEAVY = ("bleak", "httpx", "pydantic", "rich", "cryptography", "starlette", "uvicorn")


def test_cli_import_loads_no_heavy_library() -> None:
    probe = f"import sys, blelock.cli\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_version_runs_without_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from blelock.cli import main\n"
        "code = main(['--version'])\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(code, loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    from blelock import __version__

    assert f"blelock {__version__}" in result.stdout
    assert result.stdout.strip().endswith("0 []")


def test_version_is_answered_before_any_vendor_plugin_loads() -> None:
    """`blelock --version` builds no command table: the table asks every vendor's plugin for
    its options, and loading the plugins (the seam's dataclasses, asyncio under them) was half
    of its start."""
    from blelock.registry import REGISTRY

    plugins = tuple(f"{package}.plugin" for package in REGISTRY.values())
    unwanted = ("asyncio", "blelock.vendors.base", *plugins)
    probe = "from blelock.cli import main; main(['--version'])"
    assert _loaded(probe, unwanted) == []


def _loaded(probe: str, modules: tuple[str, ...]) -> list[str]:
    script = (
        f"import sys\n{probe}\n"
        f"print('LOADED:' + ','.join(m for m in {modules!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("LOADED:")]
    return [name for name in line.removeprefix("LOADED:").split(",") if name]


def test_protobuf_is_loaded_only_where_dfu_runs() -> None:
    """The unlock path (a vendor's jobs, the DFU driver it imports, the package type in hints)
    does not load protobuf; reading an init packet does."""
    protobuf = ("google.protobuf", "blelock.protocol._dfu_cc.dfu_cc_pb2")
    unlock_path = (
        "import blelock.vendors.noke.jobs, blelock.vendors.noke.plugin, blelock.dfu, "
        "blelock.protocol.dfu_package, blelock.cli.render"
    )
    assert _loaded(unlock_path, protobuf) == []
    assert _loaded("from blelock.cli import main; main(['--version'])", protobuf) == []
    reading = (
        "from blelock.protocol.dfu_package import read_package\n"
        "read_package('firmware_images/noke-4i-3.15.zip')"
    )
    assert _loaded(reading, protobuf) == list(protobuf)


def test_a_job_asks_the_radio_before_it_imports_the_link_and_the_store() -> None:
    """What a job needs before its scan starts listening is waited for in full; the link's
    libraries (the retry connector, with bluetooth-adapters and dbus-fast under it) and the
    store (with its sealing) load while the radio listens."""
    after_the_scan = (
        "blelock.transport.ble",
        "bleak_retry_connector",
        "bluetooth_adapters",
        "blelock.store",
        "cryptography",
    )
    before_the_scan = "import blelock.jobs, blelock.transport.scan"
    assert _loaded(before_the_scan, after_the_scan) == []
    assert _loaded(
        f"{before_the_scan}\nimport blelock.transport.ble, blelock.store", after_the_scan
    ) == list(after_the_scan)


# What no opening of a lock uses, whichever vendor's: firmware updates (the DFU driver, the
# package reader and its x509 / protobuf), progress bars, httpx's own command line, the kiosk,
# the streamed reader of a fleet's listing.
UNUSED_BY_AN_UNLOCK = (
    "blelock.dfu",
    "blelock.protocol.dfu",
    "blelock.protocol.dfu_init",
    "blelock.protocol.dfu_package",
    "google.protobuf",
    "rich.progress",
    "httpx._main",
    "blelock.cloud.json_stream",
    "click",
    "pygments",
    "blelock.service",
    "blelock.sync",
    "fastapi",
    "starlette",
    "uvicorn",
)
# Another vendor's package may be touched only for its plugin (registry, lock-id format) and the
# advert recogniser it scans with, its settings section (the settings loader reads every
# section) and its schema (the store is migrated for every plugin's tables), and the packages
# these sit in.
OTHER_VENDOR_ALLOWED = ("plugin", "advert", "settings", "schema")
HTTP_LIBRARIES = ("httpx", "httpcore", "h11", "anyio")
NUKI_UNUSED_BY_AN_UNLOCK = (
    "blelock.vendors.nuki.cli",
    "blelock.vendors.nuki.access",
    "blelock.vendors.nuki.web.client",
    "blelock.vendors.nuki.web.ops",
    "blelock.vendors.nuki.web.models",
    "blelock.vendors.nuki.web.rules",
    "blelock.vendors.nuki.web.window",
)


# The pydantic models of a vendor's cloud API build their validators when they first validate
# (``defer_build``): an unlock builds those of the few answers it reads, never a fleet listing's.
UNBUILT_BY_AN_UNLOCK = {
    "noke": ("LocksData", "KeysData", "ActivityData", "LockQuickClicks", "QuickClickRequest"),
    "keyless": ("LockingDevice", "Permission", "IssuedOfflineKey", "GatewayDevice", "User"),
}
# With the cloud out of the picture (offline, or no cloud at all), no HTTP library and none of
# the vendor's cloud client or API models: they come with the first cloud call.
CLOUD_ONLY = {
    "noke": ("blelock.cloud._http", "blelock.vendors.noke.cloud", "blelock.vendors.noke.models"),
    "keyless": (
        "blelock.cloud._http",
        "blelock.cloud._token_auth",
        "blelock.vendors.keyless.cloud",
        "blelock.vendors.keyless.models",
    ),
}
_BUILT_PROBE = """
import inspect
def _built():
    try:
        from pydantic import BaseModel
    except ImportError:
        return []
    return sorted(
        f"{name}.{cls.__name__}"
        for name, module in list(sys.modules.items())
        if module is not None and name.startswith("blelock.")
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__module__ == name
        and cls.__dict__.get("__pydantic_complete__", False)
    )
print('BUILT:' + ','.join(_built()))
"""


def _unlock_modules(argv: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The modules a whole ``blelock ARGV`` process loaded, and the pydantic models of
    blelock's it built."""
    probe = (
        "import sys\nfrom blelock.cli import main\n"
        f"code = main({argv!r})\n"
        "loaded = sorted(name for name, module in sys.modules.items() if module is not None)\n"
        "print('CODE:', code)\nprint('MODULES:' + ','.join(loaded))" + _BUILT_PROBE
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert "CODE: 0" in result.stdout, result.stdout + result.stderr

    def listed(prefix: str) -> list[str]:
        (line,) = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
        return [name for name in line.removeprefix(prefix).split(",") if name]

    return listed("MODULES:"), listed("BUILT:")


def _strays(modules: list[str], vendor: str, others: list[str]) -> list[str]:
    allowed = [
        name
        for name in modules
        for other in others
        if name.startswith(f"blelock.vendors.{other}.")
        and name.rsplit(".", 1)[1] in OTHER_VENDOR_ALLOWED
    ]

    def stray(name: str) -> bool:
        if any(name == u or name.startswith(u + ".") for u in UNUSED_BY_AN_UNLOCK):
            return True
        for other in others:
            if name.startswith(f"blelock.vendors.{other}."):
                return not any(ok == name or ok.startswith(name + ".") for ok in allowed)
        return False

    return [name for name in modules if stray(name)]


def test_an_unlock_imports_only_what_it_uses(tmp_path: Path) -> None:
    """A whole `blelock open LOCK` process, online and (where the vendor has it) offline, for
    every registered vendor that opens locks, against the simulated world (each lock set up
    first as a technician would: enrolled, keys synced, Nuki's paired): no module of another
    vendor beyond its plugin, nothing of firmware updates, the kiosk or httpx's CLI; offline,
    no HTTP library nor the vendor's cloud client; online, none of the API models it does not
    read built; with ``--json``, nothing of rich."""
    import asyncio

    # Before the set-up's event loop: a first import inside it reads files (blockbuster).
    import httpx  # noqa: F401

    from blelock import vendors
    from blelock.config import load_settings
    from blelock.jobs import context, open_store
    from blelock.sync import sync_keys
    from simulators.process import simulator_process

    openers = [p for p in vendors.plugins().values() if p.default_operation is not None]
    with simulator_process(
        "--locks", "1", "--keyless-locks", "1", "--nuki-locks", "1"
    ) as announced:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLELOCK_")}
        env |= announced["env"] | {
            "BLELOCK_CONFIG": os.devnull,
            "BLELOCK_DATA_DIR": str(tmp_path),
            "BLELOCK_KEY_DIR": str(tmp_path),
        }
        locks = {name: ids[0] for name, ids in announced["vendor_locks"].items() if ids}

        async def setup() -> None:  # enrolment and keys, as a technician would have them
            settings = load_settings(environ=env, read_file=False)
            async with open_store(settings) as store:
                for name, code in announced["enroll"].items():
                    plugin = vendors.plugin(name)
                    await plugin.enroll(context(plugin, settings, store), code)
                for name, options in announced["sync_options"].items():
                    plugin = vendors.plugin(name)
                    await sync_keys(context(plugin, settings, store), [locks[name]], options)

        asyncio.run(setup())
        for argv in [argv for commands in announced["prepare"].values() for argv in commands]:
            # Before a lock opens, as a technician would (Nuki: pair); not what is checked.
            prepared = subprocess.run(
                [sys.executable, "-m", "blelock", *argv], capture_output=True, text=True, env=env
            )
            assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        measured = []
        loaded: dict[tuple[str, str], list[str]] = {}
        built: dict[tuple[str, str], list[str]] = {}
        for plugin in openers:
            if plugin.name not in locks:
                continue  # the simulated world has no lock of this vendor yet
            others = [name for name in vendors.plugins() if name != plugin.name]
            modes = plugin.operations[plugin.default_operation or ""].modes
            for mode in [m for m in ("online", "offline") if m in modes] or ["auto"]:
                argv = ["open", locks[plugin.name], "--vendor", plugin.name]
                argv += [] if mode == "auto" else [f"--{mode}"]
                loaded[plugin.name, mode], built[plugin.name, mode] = _unlock_modules(argv, env)
                assert _strays(loaded[plugin.name, mode], plugin.name, others) == [], argv
                measured.append((plugin.name, mode))
        # `--json` is for machines: nothing of rich (the tables are for people).
        argv = ["open", locks["noke"], "--vendor", "noke", "--offline", "--json"]
        as_json, _ = _unlock_modules(argv, env)
        assert [name for name in as_json if name == "rich" or name.startswith("rich.")] == []
    assert ("noke", "online") in measured and ("noke", "offline") in measured
    assert ("nuki", "online") in measured and ("nuki", "offline") in measured
    assert ("keyless", "online") in measured and ("keyless", "offline") in measured
    # A Nuki lock opens with the key pairing agreed: no cloud, so no HTTP library, and of its
    # own package nothing for pairing's CLI, keypad codes, authorizations or the Web API.
    nuki_unused = (*HTTP_LIBRARIES, *NUKI_UNUSED_BY_AN_UNLOCK)
    for mode in ("online", "offline"):
        assert [
            name
            for name in loaded["nuki", mode]
            if any(name == u or name.startswith(u + ".") for u in nuki_unused)
        ] == [], mode
    assert "blelock.vendors.nuki.jobs" in loaded["nuki", "online"]  # the probe sees the visit
    for vendor, cloud_only in CLOUD_ONLY.items():
        unused = (*HTTP_LIBRARIES, *cloud_only)
        offline = loaded[vendor, "offline"]
        assert [n for n in offline if any(n == u or n.startswith(u + ".") for u in unused)] == []
        assert set(cloud_only) <= set(loaded[vendor, "online"])  # the probe sees the cloud
    for vendor, unbuilt in UNBUILT_BY_AN_UNLOCK.items():
        package = f"blelock.vendors.{vendor}.models"
        for mode in ("online", "offline"):
            assert {f"{package}.{name}" for name in unbuilt} & set(built[vendor, mode]) == set()
        # The probe sees the models it reads online (the answer's envelope, a token, …).
        assert any(name.startswith(package + ".") for name in built[vendor, "online"])


def test_a_noke_offline_visit_needs_no_http_library() -> None:
    """Everything a Nokē offline unlock runs (the command, the job, the visit, the key cache,
    the drain's rules) loads no HTTP library: the cloud client comes only with a cloud call."""
    offline_path = (
        "import blelock.cli.open, blelock.jobs, blelock.vendors.noke.plugin, "
        "blelock.vendors.noke.jobs, blelock.vendors.noke.visit, blelock.vendors.noke.keys, "
        "blelock.vendors.outbox"
    )
    assert _loaded(offline_path, ("httpx", "httpcore", "h11")) == []


def test_a_refusal_loads_no_rich(tmp_path: Path) -> None:
    """A usage error's one line (and its JSON) is printed without rich's console."""
    probe = (
        "import sys\nfrom blelock.cli import main\n"
        "code = main(['open', 'not-a-lock', '--vendor', 'noke', '--json'])\n"
        "print('CODE:', code, 'rich' in sys.modules)"
    )
    result = fresh_python(probe, BLELOCK_CONFIG=os.devnull, BLELOCK_DATA_DIR=str(tmp_path))
    assert "not-a-lock" in result.stderr
    assert result.stdout.strip().endswith("CODE: 2 False"), result.stdout + result.stderr
