"""One daemon under test: a fresh database, a configuration file, the `mailgate run` process.

SQLite lives in a temporary data directory; PostgreSQL gets a fresh schema per instance on the
machine's server, reached through `?options=-csearch_path%3D<schema>` as the tests do, and
dropped afterwards. The daemon runs in its own session (process group), so stopping it also
stops any child process it started, even after a Ctrl-C of the harness.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO
from urllib.parse import quote

from bench.corpus import SUBJECT_TAG, SUPPORT_ADDRESS

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
AGENT = "agnes@example.com"
_bytecode_cache: Path | None = None


def use_bytecode_cache(directory: Path) -> None:
    """Let mailgate's processes keep compiled bytecode in `directory`, as an installed package has.

    mailgate is installed editable, so its .pyc files would go to mailgate/__pycache__; where the
    environment says PYTHONDONTWRITEBYTECODE, every process would compile every module again
    (some 45 ms for `mailgate deliver`), which no deployment pays. PYTHONPYCACHEPREFIX keeps the
    cache out of the source tree.
    """
    global _bytecode_cache
    _bytecode_cache = directory


def python_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if _bytecode_cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(_bytecode_cache)
    return env


def postgres_base_url() -> str:
    return os.environ.get("MAILGATE_TEST_PG_URL", DEFAULT_PG_URL)


def postgres_unavailable_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(postgres_base_url(), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as error:  # any reason at all is a reason to skip, and is printed
        return f"PostgreSQL at {postgres_base_url()} is not reachable: {str(error).strip().splitlines()[0]}"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A database URL that nobody has used yet; dropped (PostgreSQL) when the block ends."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'data' / 'mailgate.sqlite3'}"
        return
    import psycopg

    schema = f"mg_bench_{uuid.uuid4().hex[:12]}"
    base = postgres_base_url()
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def write_secret(path: Path) -> Path:
    """A signing secret file (0600) that several daemons share, so each verifies the others' tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path


def write_config(
    path: Path,
    *,
    data_dir: Path,
    database_url: str,
    port: int,
    relay_port: int,
    secret_file: Path | None = None,
    processes: int | None = None,
) -> Path:
    """The daemon's configuration: loopback listener, the sink as relay, one agent on the queue.

    `max_automatic_per_minute` is raised because the benchmark means to send more new tickets a
    minute than the default circuit breaker (120) lets through; every other value is the default.
    `secret_file` (`[security] secret_file`) is given when several daemons share one database;
    otherwise each keeps its own secret in its data directory. `processes` (`[worker] processes`):
    None keeps the daemon's default.
    """
    security = f'\n[security]\nsecret_file = "{secret_file}"\n' if secret_file is not None else ""
    worker = f"\n[worker]\nprocesses = {processes}\n" if processes is not None else ""
    path.write_text(
        f"""
[storage]
data_dir = "{data_dir}"
database_url = "{database_url}"

[smtp]
listen = "127.0.0.1:{port}"

[helpdesk]
name = "{SUBJECT_TAG}"
domain = "example.com"

[[mailboxes]]
address = "{SUPPORT_ADDRESS}"
queue = "support"

[[agents]]
email = "{AGENT}"
name = "Agnes Agent"
queues = ["support"]

[outgoing]
relay_host = "127.0.0.1"
relay_port = {relay_port}
max_automatic_per_minute = 1000000

[logging]
level = "info"
format = "json"
{security}{worker}"""
    )
    return path


def mailgate_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mailgate", "--config", str(config), *args]


def deliver_command(config: Path) -> list[str]:
    """`mailgate deliver` as an MTA runs it: the installed console script when there is one."""
    script = Path(sys.executable).parent / "mailgate"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "mailgate"]
    return [*head, "--config", str(config), "deliver", "--recipient", SUPPORT_ADDRESS]


def upgrade_schema(config: Path, timeout: float = 120.0) -> None:
    result = subprocess.run(
        mailgate_command(config, "db", "upgrade"), capture_output=True, text=True, timeout=timeout, check=False,
        env=python_env(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"mailgate db upgrade failed: {result.stderr.strip()[-2000:]}")


class DaemonProcess:
    """`python -m mailgate --config PATH run` in its own process group, logging to a file."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.log_path = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until the port accepts a connection; returns the seconds that took."""
        started = time.monotonic()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            mailgate_command(self.config, "run"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=python_env(),
            start_new_session=True,
        )
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"daemon did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group if it does not stop in time."""
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            self._kill_group(process.pid)
            return process.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    @staticmethod
    def _kill_group(pgid: int) -> None:
        """Children the daemon left behind (its process group is the one we created for it)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
