"""sd_notify client: datagrams to a path or abstract socket, silence without NOTIFY_SOCKET, the watchdog interval."""

from __future__ import annotations

import os
import time

import pytest

from mailgate import systemd_notify
from tests.support.daemon_extras import NotifyListener


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_sends_one_datagram_with_all_lines(abstract: bool) -> None:
    """READY=1 and STATUS=... arrive together in one datagram, on a filesystem or an abstract ("@") socket."""
    listener = NotifyListener(abstract=abstract)
    try:
        assert listener.address.startswith("@") is abstract
        sent = systemd_notify.notify("READY=1", "STATUS=up", environ={"NOTIFY_SOCKET": listener.address})
        assert sent is True
        assert listener.receive(timeout=5) == "READY=1\nSTATUS=up"
    finally:
        listener.close()


def test_notify_is_a_no_op_without_the_variable() -> None:
    """Outside systemd nothing is sent and nothing fails."""
    assert systemd_notify.notify("READY=1", environ={}) is False
    assert systemd_notify.notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False


def test_notify_survives_a_vanished_supervisor() -> None:
    """A socket path nobody listens on gives False, never an exception."""
    assert systemd_notify.notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": "/nonexistent/notify"}) is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() -> None:
    """WATCHDOG_USEC=30 s gives pings every 15 s; another process's WATCHDOG_PID or no variable gives None."""
    assert systemd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd_notify.watchdog_interval(mine) == 1.0
    assert systemd_notify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert systemd_notify.watchdog_interval({}) is None
    assert systemd_notify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_reloading_message_carries_a_monotonic_stamp() -> None:
    """RELOADING=1 comes with MONOTONIC_USEC close to CLOCK_MONOTONIC now."""
    reloading, stamp = systemd_notify.reloading_message()
    assert reloading == "RELOADING=1"
    usec = int(stamp.removeprefix("MONOTONIC_USEC="))
    assert abs(usec - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 5_000_000
