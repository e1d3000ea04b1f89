"""The daemon as a real process: start it, wait until it accepts mail, kill it, restart it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, *, data_dir: Path, db_url: str, port: int, extra: str = "") -> Path:
    path.write_text(
        f"""
[storage]
data_dir = "{data_dir}"
database_url = "{db_url}"

[smtp]
listen = "127.0.0.1:{port}"

[helpdesk]
name = "Acme Support"

[[mailboxes]]
address = "support@example.com"
queue = "support"
{extra}
"""
    )
    return path


class Daemon:
    """`python -m mailgate run` with a given config; logs go to a file beside it."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = config.with_suffix(".log")
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "--config", str(self.config), "run"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"daemon did not listen on {self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a power cut of the process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_log()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
