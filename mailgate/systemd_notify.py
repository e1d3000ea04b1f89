"""The sd_notify protocol spoken directly: one datagram to $NOTIFY_SOCKET per state change (stdlib only).

systemd's Type=notify waits for READY=1; WatchdogSec= expects WATCHDOG=1 at least every
$WATCHDOG_USEC microseconds. Without $NOTIFY_SOCKET (not started by systemd) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def socket_address(environ: Mapping[str, str] | None = None) -> str | bytes | None:
    """Where to send notifications: a path, an abstract name (bytes with a leading NUL), or None."""
    value = (os.environ if environ is None else environ).get(NOTIFY_SOCKET, "")
    if not value:
        return None
    if value.startswith("@"):
        # Linux abstract namespace: the "@" stands for a leading NUL byte (sd_notify(3)).
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used by mailgate's units


def notify(*assignments: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send "KEY=VALUE" lines in one datagram; False when there is nowhere to send or sending failed.

    A failure is swallowed on purpose: a daemon must not stop serving mail because its supervisor
    is gone; systemd notices a missing READY or watchdog ping by itself.
    """
    address = socket_address(environ)
    if address is None or not assignments:
        return False
    payload = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(payload)
    except OSError:
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, or None when no watchdog is set for us."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    # The variables are inherited by children; only the process systemd watches may ping.
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


def reloading_message() -> tuple[str, str]:
    """RELOADING=1 with the CLOCK_MONOTONIC stamp systemd 253+ asks for; older versions ignore the stamp."""
    return "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
