"""The CLI run on a pseudo-terminal, as a user sees it (shared by the tests that read the screen)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from tests.conftest import REPO


def run_on_pty(args: list[str], columns: int = 200, timeout: float = 180, term: str | None = None) -> tuple[int, bytes]:
    """`python -m analyzer ARGS` with stdout and stderr on a terminal `columns` wide; returns the
    exit code and every byte it wrote (escape sequences included). `term` sets TERM (else the
    caller's environment decides)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", **({"TERM": term} if term else {})}
    proc = subprocess.Popen([sys.executable, "-m", "analyzer", *args], cwd=REPO, stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(chunks)
