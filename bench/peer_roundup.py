"""`--peer roundup`: Roundup's mail gateway on the same corpus, in a throwaway venv.

Steps (all in a temporary directory, removed afterwards):
1. `python3 -m venv DIR/venv`, `DIR/venv/bin/pip install roundup` (from PyPI).
2. `roundup-admin -i TRACKER install classic sqlite mail_domain=example.com,mail_host=127.0.0.1,
   mail_port=<sink>,tracker_web=http://127.0.0.1:8917/,mailgw_subject_content_match=never` then
   `roundup-admin -i TRACKER initialise <admin password>`. Subject matching is off because the
   corpus's customers share subjects ("Cannot log in to the portal"): Roundup's default would
   file one customer's new request into another's issue; In-Reply-To still threads replies,
   as in mailgate. The classic schema refuses mail from
   unknown senders; the one line it ships commented out for that,
   `db.security.addPermissionToRole('Anonymous', 'Email Access')`, is enabled, so customers'
   mail opens issues as it does in mailgate. Outgoing mail goes to the same loopback sink.
3. As an MTA pipe: one `roundup-mailgw TRACKER` process per message, the message on stdin with
   LF line ends (as Postfix's pipe hands it over), in corpus order.
4. As a whole mailbox in one process: the corpus written to an mbox file and
   `roundup-mailgw TRACKER mailbox FILE` (Roundup's name for a Unix mbox spool source).
Each mode gets its own copy of the freshly initialised tracker. Roundup's database is then
counted (`_msg`, `_issue`) to show that every message was taken.
"""

from __future__ import annotations

import mailbox
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.corpus import Mail
from bench.metrics import latency_ms, per_second

INSTALL_TIMEOUT = 900.0
PER_MESSAGE_TIMEOUT = 120.0


class PeerUnavailable(RuntimeError):
    """Roundup could not be installed or set up; the message says why."""


def _run(command: Sequence[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(list(command), capture_output=True, timeout=timeout, check=False, **kwargs)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise PeerUnavailable(f"{' '.join(command[:3])}… exited {result.returncode}: {output[-800:]}")
    return result


def base_python() -> str:
    """A Python outside the project's venv, to make the throwaway venv from."""
    return shutil.which("python3") or str(getattr(sys, "_base_executable", sys.executable))


def install(workdir: Path) -> tuple[Path, str]:
    """A venv with Roundup from PyPI; returns its bin directory and Roundup's version."""
    venv = workdir / "venv"
    _run([base_python(), "-m", "venv", str(venv)], 300)
    _run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "roundup"], INSTALL_TIMEOUT)
    version = _run([str(venv / "bin" / "roundup-admin"), "-v"], 60).stdout.decode().strip().splitlines()
    return venv / "bin", (version[0] if version else "unknown")


def make_tracker(bin_dir: Path, home: Path, relay_port: int) -> None:
    settings = (
        f"mail_domain=example.com,mail_host=127.0.0.1,mail_port={relay_port},tracker_web=http://127.0.0.1:8917/,"
        "mailgw_subject_content_match=never"
    )
    admin = str(bin_dir / "roundup-admin")
    _run([admin, "-i", str(home), "install", "classic", "sqlite", settings], 300, stdin=subprocess.DEVNULL)
    schema = home / "schema.py"
    commented = "#db.security.addPermissionToRole('Anonymous', 'Email Access')"
    text = schema.read_text()
    if commented not in text:
        raise PeerUnavailable("the classic template no longer has the anonymous 'Email Access' line to enable")
    schema.write_text(text.replace(commented, commented[1:]))
    _run([admin, "-i", str(home), "initialise", "bench-admin-password"], 300, stdin=subprocess.DEVNULL)


def _counts(home: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{home / 'db' / 'db'}?mode=ro", uri=True)
    try:
        return {
            "issues": int(connection.execute("SELECT count(*) FROM _issue").fetchone()[0]),
            "messages": int(connection.execute("SELECT count(*) FROM _msg").fetchone()[0]),
        }
    finally:
        connection.close()


def as_pipe(bin_dir: Path, home: Path, corpus: Sequence[Mail]) -> dict[str, Any]:
    gateway = str(bin_dir / "roundup-mailgw")
    walls: list[float] = []
    failures = 0
    started = time.perf_counter()
    for mail in corpus:
        before = time.perf_counter()
        result = subprocess.run([gateway, str(home)], input=_lf(mail.raw), capture_output=True,
                                timeout=PER_MESSAGE_TIMEOUT, check=False)
        walls.append(time.perf_counter() - before)
        failures += result.returncode != 0
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "per_second": per_second(len(corpus), seconds),
            "per_message_ms": latency_ms(walls), "nonzero_exits": failures, **_counts(home)}


def as_mailbox(bin_dir: Path, home: Path, corpus: Sequence[Mail], workdir: Path) -> dict[str, Any]:
    path = workdir / "corpus.mbox"
    box = mailbox.mbox(str(path), create=True)
    try:
        for mail in corpus:
            box.add(_lf(mail.raw))
        box.flush()
    finally:
        box.close()
    started = time.perf_counter()
    result = subprocess.run([str(bin_dir / "roundup-mailgw"), str(home), "mailbox", str(path)], capture_output=True,
                            timeout=PER_MESSAGE_TIMEOUT * max(1, len(corpus) // 10), check=False)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "per_second": per_second(len(corpus), seconds),
            "exit_code": result.returncode, **_counts(home)}


def _lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def run_roundup(corpus: Sequence[Mail], workdir: Path, relay_port: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Both modes; raises PeerUnavailable with the reason when Roundup cannot be set up."""
    log("  roundup: creating a venv and installing roundup from PyPI")
    bin_dir, version = install(workdir)
    pristine = workdir / "tracker"
    make_tracker(bin_dir, pristine, relay_port)
    pipe_home, mbox_home = workdir / "tracker-pipe", workdir / "tracker-mbox"
    shutil.copytree(pristine, pipe_home)
    shutil.copytree(pristine, mbox_home)
    log(f"  roundup {version}: {len(corpus)} mails as an MTA pipe (one process each)")
    pipe = as_pipe(bin_dir, pipe_home, corpus)
    log(f"  roundup {version}: the same mails as one mbox in one process")
    whole = as_mailbox(bin_dir, mbox_home, corpus, workdir)
    return {"version": version, "template": "classic", "backend": "sqlite", "pipe": pipe, "mailbox": whole}
