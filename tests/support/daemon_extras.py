"""More ways to run the daemon as systemd would: a NOTIFY_SOCKET listener, a process started without
waiting, parallel senders that retry, a small HTTP getter and PNG decoding for screenshots."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.support.mailfactory import make_mail


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout}s")


class NotifyListener:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET; records every datagram."""

    def __init__(self, abstract: bool = False) -> None:
        self._dir = tempfile.mkdtemp(prefix="mgn")  # short: sun_path holds 108 bytes at most
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"mailgate-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.messages: list[tuple[float, str]] = []

    def receive(self, timeout: float) -> str | None:
        """The next datagram, or None when none came within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        text = data.decode()
        self.messages.append((time.monotonic(), text))
        return text

    def wait_for(self, line: str, timeout: float) -> str:
        """Receive until a datagram holds `line` (e.g. "READY=1"); raises after `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            text = self.receive(left)
            if text is not None and line in text.split("\n"):
                return text
        raise TimeoutError(f"no {line} within {timeout}s; got {[m for _, m in self.messages]}")

    def count(self, line: str) -> int:
        return sum(line in text.split("\n") for _, text in self.messages)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class ServiceProcess:
    """`mailgate run` started the way systemd starts it: extra environment, no waiting for the port."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = config.with_suffix(".service.log")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "--config", str(self.config), "run"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is not None and self._log is not None:
                self._log.close()
                self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def kill(self) -> None:
        """Clean-up for a test that failed midway: SIGKILL if it is still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class ParallelSender:
    """Sends mails 0..total-1 from `threads` connections at once; anything but 250 is retried.

    Records which indexes got 250 and the replies that refused a mail (421 while shutting down,
    refused connections while the daemon is down).
    """

    def __init__(self, port: int, total: int, threads: int = 4, subject: str = "service test", budget: float = 300):
        self.port = port
        self.total = total
        self.subject = subject
        self.budget = budget
        self.accepted: list[int] = []
        self.refusals: list[str] = []
        self.errors: list[BaseException] = []
        self._todo: queue.Queue[int] = queue.Queue()
        for index in range(total):
            self._todo.put(index)
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> ParallelSender:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))

    @property
    def done(self) -> bool:
        with self._lock:
            return len(self.accepted) == self.total

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def _run(self) -> None:
        deadline = time.monotonic() + self.budget
        try:
            while True:
                try:
                    index = self._todo.get_nowait()
                except queue.Empty:
                    return
                self._deliver(index, deadline)
        except BaseException as error:  # reported to the test thread
            self.errors.append(error)

    def _deliver(self, index: int, deadline: float) -> None:
        sender = f"s{index}@customer.example"
        raw = make_mail(sender=sender, subject=f"{self.subject} {index}", message_id=f"<svc-{index}@client.example>")
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    client.sendmail(sender, ["support@example.com"], raw)
            except smtplib.SMTPResponseException as error:
                self._refused(f"{error.smtp_code}")
            except (OSError, smtplib.SMTPException) as error:
                self._refused(type(error).__name__)
            else:
                with self._lock:
                    self.accepted.append(index)
                return
            time.sleep(0.05)
        raise TimeoutError(f"mail {index} not accepted within the budget")

    def _refused(self, reason: str) -> None:
        with self._lock:
            self.refusals.append(reason)


def http_get(port: int, path: str, *, method: str = "GET", timeout: float = 10.0) -> tuple[int, str, str]:
    """(status, content type, body) of one request to the status listener on loopback."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def png_colours(path: Path, sample_every: int = 1) -> int:
    """Distinct RGB colours in a PNG (8-bit RGB or RGBA, non-interlaced), decoded with zlib alone."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    width, height, depth, colour_type, interlace, idat = _png_chunks(data)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}")
    channels = 3 if colour_type == 2 else 4
    colours: set[bytes] = set()
    for y, row in enumerate(_png_rows(zlib.decompress(idat), width * channels, height, channels)):
        if y % sample_every == 0:
            colours.update(row[x : x + 3] for x in range(0, len(row), channels))
    return len(colours)


def _png_chunks(data: bytes) -> tuple[int, int, int, int, int, bytes]:
    offset, idat, header = 8, bytearray(), b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    return width, height, depth, colour_type, interlace, bytes(idat)


def _png_rows(raw: bytes, stride: int, height: int, bpp: int) -> list[bytes]:
    """Undo the per-row filters of PNG (None, Sub, Up, Average, Paeth)."""
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upper_left = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], upper_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return rows


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c
