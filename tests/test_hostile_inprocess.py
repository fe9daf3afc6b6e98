"""Hostile captures in process (issue 7, section 3): `analyzer.cli.main.main` on a hostile capture opens
no socket, resolves no name and starts no process; output folder names are sanitised."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from analyzer.cli.analyze import report_dir
from tests.test_hostile import HOSTILE_FILE_NAME, write_hostile_capture


@pytest.fixture(scope="module")
def hostile_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Small long-values keep this in-process run quick; test_hostile.py covers the 100 kB case.
    return write_hostile_capture(tmp_path_factory.mktemp("inproc") / HOSTILE_FILE_NAME, long_value=2000)


def _tripwire(calls: list[str], name: str):
    def refuse(*args, **kwargs):
        calls.append(name)
        raise OSError(f"confscope test: {name} is forbidden during analysis")

    return refuse


def test_no_network_and_no_subprocess(
    hostile_capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from analyzer.cli.main import main

    calls: list[str] = []
    for name in ("connect", "connect_ex", "sendto", "sendmsg", "bind"):
        monkeypatch.setattr(socket.socket, name, _tripwire(calls, f"socket.{name}"))
    for name in (
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getnameinfo",
        "create_connection",
    ):
        monkeypatch.setattr(socket, name, _tripwire(calls, f"socket.{name}"))
    monkeypatch.setattr(subprocess, "Popen", _tripwire(calls, "subprocess.Popen"))
    for name in ("system", "popen", "posix_spawn", "posix_spawnp", "fork", "execv", "execve", "execvp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _tripwire(calls, f"os.{name}"))
    monkeypatch.chdir(tmp_path)

    rc = main(["analyze", str(hostile_capture), "-o", "out", "--format", "json,md,html,csv", "--progress", "never"])
    captured = capsys.readouterr()
    assert calls == []
    assert rc in (0, 1), captured.err
    assert "internal error" not in captured.err
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written and all(p.startswith("out/") for p in written), written
    assert len({p.split("/")[1] for p in written}) == 1


def test_tripwire_really_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patched functions above are the ones a resolver or fetch would call."""
    calls: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", _tripwire(calls, "socket.getaddrinfo"))
    monkeypatch.setattr(subprocess, "Popen", _tripwire(calls, "subprocess.Popen"))
    with pytest.raises(OSError):
        socket.create_connection(("example.invalid", 80), timeout=0.1)
    with pytest.raises(OSError):
        subprocess.run(["true"], check=False)
    assert calls == ["socket.getaddrinfo", "subprocess.Popen"]


@pytest.mark.parametrize(
    "given",
    [
        "../../etc/x.pcap",
        "/abs/path/../../../root/.ssh/id.pcap",
        "..",
        ".",
        "...pcap",
        "..\\..\\windows\\x.pcap",
        "a/b/..pcap",
        "evil\x1b]8;;http://x\x07name\x07.pcap",
        "\u202egnp.exe.pcap",
        "x\x00y.pcap",
        "=cmd|' C calc'!A0.pcap",
        "<script>alert(1)</script>.pcap",
        "A" * 5000 + ".pcap",
        "",
    ],
)
def test_report_dir_stays_inside_output(given: str, tmp_path: Path) -> None:
    used: set[str] = set()
    out = report_dir(tmp_path, given, used)
    assert out.parent == tmp_path
    name = out.name
    assert name and name not in (".", "..") and not name.startswith(".")
    assert all(ch.isalnum() or ch in "-_." for ch in name), repr(name)
    assert not any(ch in name for ch in "\x00\x1b\x07\u202e/\\<>|=")
    assert len(name) <= 90
    again = report_dir(tmp_path, given, used)
    assert again != out and again.parent == tmp_path  # two captures never share a folder


def test_report_dir_names_are_ascii_or_letters_only(tmp_path: Path) -> None:
    # str.isalnum() admits every script's letters and digits; none of them is a path separator.
    out = report_dir(tmp_path, "réunion-\u0661\u0662.pcap", set())
    assert out.parent == tmp_path and "/" not in out.name
