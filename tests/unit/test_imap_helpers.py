"""IMAP ingest helpers: reconnect backoff, byte-bounded chunks, error descriptions and the no-MOVE fallback."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest
from imapclient.exceptions import LoginError

from mailgate.config import ImapAccount
from mailgate.ingest.imap import (
    ImapConnection,
    TokenCommandFailed,
    _login,
    backoff_delay,
    chunks_by_size,
    describe_error,
)

ACCOUNT = ImapAccount(host="imap.example.com", username="u", password="hunter2")


def test_backoff_doubles_from_one_second_to_a_cap_of_300() -> None:
    """Without jitter the delays are 1, 2, 4 … 256, 300, 300; jitter adds at most half again."""
    no_jitter = [backoff_delay(n, lambda low, high: low) for n in range(11)]
    assert no_jitter == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff_delay(2, lambda low, high: high) == 6
    assert backoff_delay(50, lambda low, high: high) == 300


def test_chunks_stay_under_the_byte_budget() -> None:
    """UIDs are grouped in order; one message larger than the budget still forms its own chunk."""
    sizes = {1: 40, 2: 40, 3: 40, 4: 500, 5: 10}
    assert list(chunks_by_size(sizes, max_bytes=100)) == [[1, 2], [3], [4], [5]]


def test_error_descriptions_name_the_class() -> None:
    """DNS, refusal, timeout, TLS and login failures each read differently, without the password."""
    assert "cannot resolve host" in describe_error(socket.gaierror(-2, "Name or service not known"), ACCOUNT)
    assert "connection refused" in describe_error(ConnectionRefusedError(111, "refused"), ACCOUNT)
    assert "timed out" in describe_error(TimeoutError(), ACCOUNT)
    assert "TLS handshake" in describe_error(ssl.SSLError(1, "WRONG_VERSION_NUMBER"), ACCOUNT)
    login = describe_error(LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'"), ACCOUNT)
    assert login == "login failed: authentication failed ([AUTHENTICATIONFAILED] Authentication failed.)"
    assert "hunter2" not in login


class FakeClient:
    """Records commands; advertises only what it is given."""

    def __init__(self, capabilities: tuple[bytes, ...]) -> None:
        self._capabilities = capabilities
        self.commands: list[tuple[Any, ...]] = []

    def capabilities(self) -> tuple[bytes, ...]:
        return self._capabilities

    def list_folders(self, directory: str, pattern: str) -> list[Any]:
        return [((b"\\Noselect",), b".", "")]

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.commands.append((name, *args))


def test_move_without_move_capability_copies_flags_and_uid_expunges() -> None:
    """Without RFC 6851 MOVE: COPY, \\Deleted, then UID EXPUNGE (RFC 4315) of exactly those UIDs."""
    client = FakeClient((b"IMAP4REV1", b"UIDPLUS"))
    ImapConnection(client, ACCOUNT).move([3, 4], "mailgate/processed")
    assert [c[0] for c in client.commands] == ["copy", "add_flags", "uid_expunge"]
    assert client.commands[0] == ("copy", [3, 4], "mailgate.processed")
    assert client.commands[2] == ("uid_expunge", [3, 4])


def test_move_uses_move_when_offered() -> None:
    """With MOVE advertised, one command moves the messages, into the server's own hierarchy."""
    client = FakeClient((b"IMAP4REV1", b"MOVE"))
    ImapConnection(client, ACCOUNT).move([7], "mailgate/oversized")
    assert client.commands == [("move", [7], "mailgate.oversized")]


def test_xoauth2_login_uses_the_token_command_output() -> None:
    """auth = "xoauth2" logs in with the stripped stdout of token_command, run without a shell."""
    account = ImapAccount(host="h", username="u@example.com", auth="xoauth2", token_command=("echo", "tok-123"))
    client = FakeClient(())
    _login(client, account)
    assert client.commands == [("oauth2_login", "u@example.com", "tok-123")]


def test_failing_token_command_reports_no_output() -> None:
    """A failing token_command is a login failure whose message carries its status, never its output."""
    account = ImapAccount(
        host="h", username="u", auth="xoauth2", token_command=("sh", "-c", "echo leaked-secret; exit 3")
    )
    with pytest.raises(TokenCommandFailed) as caught:
        _login(FakeClient(()), account)
    assert "exit status 3" in str(caught.value)
    assert "leaked-secret" not in str(caught.value)
