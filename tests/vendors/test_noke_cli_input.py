"""How `blelock noke quick-clicks issue|revoke` reads codes: they open a lock, so at a terminal
they are asked for without echo (like a PIN), and piped input is read whole."""

from __future__ import annotations

import io

import pytest

from blelock.vendors.noke import cli


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_at_a_terminal_codes_are_asked_for_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    typed = iter(["10110 3", "0101", ""])
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    monkeypatch.setattr("sys.stdin", Terminal("echoed if read from here"))
    monkeypatch.setattr("getpass.getpass", getpass)
    assert cli.code_lines() == "10110 3\n0101"
    assert len(prompts) == 3 and "empty line" in prompts[0]


def test_piped_codes_are_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("10110 3\n0101\n"))
    assert cli.code_lines() == "10110 3\n0101\n"
