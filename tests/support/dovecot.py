"""A throwaway Dovecot IMAP server in the foreground on a free loopback port, with its own config and mail.

Dovecot refuses to run mail processes as root, so as root the mail belongs to `nobody`; as any
other user, everything runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from imapclient import IMAPClient

from tests.support.daemon import free_port

DOVECOT = "/usr/sbin/dovecot"


def dovecot_path() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return DOVECOT if os.access(DOVECOT, os.X_OK) else None


def dovecot_unavailable_reason() -> str | None:
    """None when Dovecot can be started here, else why not."""
    if dovecot_path() is None:
        return "dovecot is not installed (Debian: apt-get install dovecot-imapd; scripts/test.sh does it as root)"
    return None


def _accounts() -> tuple[int, int, str, str]:
    """(uid, gid, internal user, login user) for the mail processes."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        internal = "dovenull" if _user_exists("dovenull") else "nobody"
        return nobody.pw_uid, nobody.pw_gid, internal, internal
    me = pwd.getpwuid(os.geteuid())
    return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Dovecot:
    """`dovecot -F` with users from `users` (name -> password); `capabilities` replaces the advertised list.

    With `tls`, a self-signed certificate for 127.0.0.1 (`self.certificate`) serves STARTTLS on
    `port` and implicit TLS on `tls_port`.
    """

    def __init__(
        self, users: dict[str, str] | None = None, *, capabilities: str | None = None, tls: bool = False
    ) -> None:
        self.users = users or {"agent": "secret"}
        self.capabilities = capabilities
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        # Not under pytest's tmp_path: that is mode 0700 and the mail processes run as `nobody`.
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        self.root.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        uid, gid, internal, login = _accounts()
        home = self.root / "home"
        home.mkdir()
        os.chown(home, uid, gid)
        (self.root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{pw}\n" for user, pw in self.users.items()))
        capability = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        ssl = self._ssl_settings() if self.tls else "ssl = no\n"
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            f"""protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
mail_location = maildir:{home}/%u/Maildir
{capability}passdb {{
  driver = passwd-file
  args = {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
}}
"""
        )

    @property
    def certificate(self) -> Path:
        return self.root / "cert.pem"

    def _ssl_settings(self) -> str:
        key = self.root / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
                str(key),
                "-out",
                str(self.certificate),
            ],
            check=True,
            capture_output=True,
        )
        return f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{key}\n"

    def start(self, timeout: float = 20.0) -> None:
        binary = dovecot_path()
        assert binary is not None, dovecot_unavailable_reason()
        output = (self.root / "stdout.log").open("ab")
        # Its own session, so `stop` can end every Dovecot process the way a service manager does.
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(self.config)], stdout=output, stderr=output, start_new_session=True
        )
        output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.process.returncode}: {self.log_tail()}")
            if self._greets():
                return
            time.sleep(0.05)
        raise TimeoutError(f"dovecot did not greet on port {self.port} within {timeout}s: {self.log_tail()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
                return connection.recv(200).startswith(b"* OK")
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait; the mail stays, so `start` again serves the same mailboxes on the same port."""
        if self.process is None or self.process.poll() is not None:
            return
        # The master alone would leave its imap processes serving open connections; a service
        # manager's stop (systemd's control group) ends them all, and so does this.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        self._wait_for_group_exit(timeout)

    def _wait_for_group_exit(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.remove()

    def log_tail(self) -> str:
        texts = [
            p.read_text(errors="replace") for p in (self.root / "dovecot.log", self.root / "stdout.log") if p.exists()
        ]
        return "\n".join(texts)[-3000:]

    def account(self, user: str = "agent", **overrides: Any) -> dict[str, Any]:
        """An [[imap]] table for mailgate pointing at this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "tls": "none",
            "username": user,
            "password": self.users[user],
            **overrides,
        }

    @contextmanager
    def client(self, user: str = "agent") -> Iterator[Any]:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        try:
            client.login(user, self.users[user])
            yield client
        finally:
            try:
                client.logout()
            except Exception:  # The test's own client: closing it must not hide the real failure.
                client.shutdown()

    def append(self, messages: Iterable[bytes], folder: str = "INBOX", user: str = "agent") -> None:
        """APPEND each message (creating the folder if needed), in one session."""
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                client.append(folder, raw)

    def count(self, folder: str, user: str = "agent") -> int:
        """Messages in `folder` that are not flagged \\Deleted; 0 when the folder does not exist."""
        with self.client(user) as client:
            if not client.folder_exists(folder):
                return 0
            client.select_folder(folder, readonly=True)
            return len(client.search(["NOT", "DELETED"]))

    def flags(self, folder: str, user: str = "agent") -> list[tuple[bytes, ...]]:
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            return [tuple(data[b"FLAGS"]) for data in client.fetch(uids, ["FLAGS"]).values()] if uids else []
