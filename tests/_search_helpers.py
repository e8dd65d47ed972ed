"""Helpers shared by the search tests: the console script, a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def swiftnas_exe() -> str:
    exe = shutil.which("swiftnas", path=str(Path(sys.executable).parent))
    assert exe, "the swiftnas console script is not installed (pip install -e .)"
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; CI runs as root, developers usually do not.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server(base: Path) -> Iterator[str]:
    """A fresh PostgreSQL 15 on 127.0.0.1 (Debian's `postgresql` package); yields its URL."""
    initdb = PG_BIN / "initdb"
    assert initdb.exists(), (
        "PostgreSQL is not installed: `apt-get install -y postgresql` (make test does it)"
    )
    data, sock = base / "pgdata", base / "pgsock"
    sock.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(initdb), "-D", str(data), "-U", "swiftnas",
                                 "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                 str(base / "pg.log"), "-w", "-o",
                                 f"-h 127.0.0.1 -p {port} -k {sock}", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1",
                                     "-p", str(port), "-U", "swiftnas", "swiftnas"]),
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://swiftnas@127.0.0.1:{port}/swiftnas"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "stop"]), check=False, capture_output=True)


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def run_until_then_kill(cmd: list[str], env: dict[str, str], ready: Callable[[], bool],
                        timeout: float = 120, interval: float = 0.5) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds (which must happen within
    ``timeout``), and reap it: a driver killed mid-run, as `kill -9` or the OOM killer does."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        assert wait_for(ready, timeout=timeout, interval=interval)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
