"""What a command needs after the visit is imported while the visit waits on the radio: from
when the plugin asks for the sighting, in a thread, and only what the command will use."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from blelock import preload
from blelock.cli.render import DRAW_MODULES
from blelock.config import Settings
from blelock.store import Store
from blelock.transport.scan import Found
from blelock.vendors import base
from blelock.vendors.base import VendorContext, VendorPlugin
from tests.conftest import fresh_python


def test_modules_not_imported_yet_are_imported_in_a_thread_past_one_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "preload_probe_a.py").write_text(
        "import threading\nBY = threading.current_thread().name\n"
    )
    (tmp_path / "preload_probe_b.py").write_text("raise RuntimeError('broken')\n")
    (tmp_path / "preload_probe_c.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("preload_probe_a", "preload_probe_b", "preload_probe_c"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    thread = preload.in_background(["preload_probe_a", "preload_probe_b", "preload_probe_c", "os"])

    assert thread is not None
    thread.join()
    assert sys.modules["preload_probe_a"].BY == "blelock-preload"
    assert "preload_probe_b" not in sys.modules  # its failure is the command's to raise, later
    assert sys.modules["preload_probe_c"].VALUE == 3
    assert preload.in_background(["preload_probe_a", "os"]) is None  # all there: no thread


async def test_the_loop_awaits_a_module_a_preload_is_still_importing_without_stalling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = SimpleNamespace(started=threading.Event(), release=threading.Event())
    monkeypatch.setitem(sys.modules, "preload_gate", gate)
    (tmp_path / "preload_slow.py").write_text(
        "import preload_gate\npreload_gate.started.set()\npreload_gate.release.wait(10)\n"
        "VALUE = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "preload_slow", raising=False)
    thread = preload.in_background(["preload_slow"])
    assert thread is not None
    await asyncio.to_thread(gate.started.wait, 10)

    waiting = asyncio.ensure_future(preload.imported("preload_slow"))
    await asyncio.sleep(0)  # one turn of the loop: a stalled loop would not come back here
    assert not waiting.done()  # in sys.modules already, but not ready: not taken as imported
    gate.release.set()
    await waiting
    assert sys.modules["preload_slow"].VALUE == 1
    thread.join()


async def test_a_module_awaited_and_not_preloaded_is_imported_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "preload_probe_d.py").write_text(
        "import threading\nBY = threading.current_thread().name\n"
    )
    (tmp_path / "preload_probe_e.py").write_text("raise RuntimeError('broken module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("preload_probe_d", "preload_probe_e"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    await preload.imported("preload_probe_d")
    assert threading.current_thread().name != sys.modules["preload_probe_d"].BY
    with pytest.raises(RuntimeError, match="broken module"):  # its own error, to its caller
        await preload.imported("preload_probe_e")


def test_the_modules_a_table_of_results_needs_are_all_named_for_preloading(
    tmp_path: Path,
) -> None:
    """Drawing the table after the preload imports no further module of rich: a module the
    renderer starts to use is named in DRAW_MODULES, or this fails."""
    probe = (
        "import importlib, sys\n"
        "from blelock.cli.render import DRAW_MODULES, show_results\n"
        "from blelock.model import VisitResult\n"
        "for name in DRAW_MODULES: importlib.import_module(name)\n"
        "before = {m for m in sys.modules if m == 'rich' or m.startswith('rich.')}\n"
        "show_results([VisitResult('C7:E6:B0:C6:75:38', 'noke', 'unlock', True, 4, 87, "
        "{'session': 'a'})], [], as_json=False)\n"
        "after = {m for m in sys.modules if m == 'rich' or m.startswith('rich.')}\n"
        "print('NEW:', sorted(after - before), file=sys.stderr)\n"
    )
    drawn = fresh_python(probe)
    assert "C7:E6:B0:C6:75:38" in drawn.stdout  # the table was drawn
    assert drawn.stderr.strip().endswith("NEW: []"), drawn.stderr


async def test_the_preload_starts_once_when_the_plugin_first_asks_for_the_sighting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[str, ...]] = []
    monkeypatch.setattr(base.preload, "in_background", lambda names: started.append(tuple(names)))
    listening: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
    ctx = VendorContext(
        VendorPlugin(),
        cast(Settings, object()),
        cast(Store, object()),
        listening=listening,
        preload=("rich.table",),
    )
    assert started == []  # not while the job prepares

    asked = asyncio.ensure_future(ctx.sighting())
    await asyncio.sleep(0)
    assert started == [("rich.table",)]  # from the ask: the wait for the advert is the radio's too
    listening.set_result(cast(Found, object()))
    await asked
    await ctx.sighting()
    assert started == [("rich.table",)]


async def test_a_context_with_nothing_to_preload_starts_no_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[object] = []
    monkeypatch.setattr(base.preload, "in_background", started.append)
    ctx = VendorContext(VendorPlugin(), cast(Settings, object()), cast(Store, object()))
    assert await ctx.sighting() is None
    assert started == []


@pytest.mark.parametrize(("flags", "preloaded"), [([], DRAW_MODULES), (["--json"], ())])
def test_an_open_command_preloads_its_table_unless_it_prints_json(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], preloaded: tuple[str, ...]
) -> None:
    from blelock.cli import build_parser
    from blelock.cli import open as open_command

    asked: list[Sequence[str]] = []

    async def run_operation(*args: object, preload: Sequence[str], **kwargs: object) -> object:
        asked.append(preload)
        return object()

    monkeypatch.setattr(open_command, "run_operation", run_operation)
    args = build_parser().parse_args(["open", "C7:E6:B0:C6:75:38", "--vendor", "noke", *flags])
    asyncio.run(open_command.visit(args, cast(Settings, object())))
    assert asked == [preloaded]
