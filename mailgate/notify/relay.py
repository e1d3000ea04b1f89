"""The outgoing SMTP client: smtplib, run off the event loop; replies mapped to temporary or permanent (tier 2).

smtplib does not verify certificates unless given a context, so STARTTLS always gets
`ssl.create_default_context()`. smtplib refuses CR/LF in addresses and dot-stuffs the data.

A mail to or from an address with non-ASCII characters (RFC 6531), or whose header holds one
in UTF-8 (RFC 6532), is sent with SMTPUTF8; a relay that does not offer it refuses that mail
permanently, with the reason, and the connection goes on serving the next mail.

One connection carries consecutive mails: `send` opens it when there is none and leaves it
open; the caller ends it with `close` (QUIT) once its queue is empty. A connection is also
replaced after MAILS_PER_CONNECTION mails or CONNECTION_REUSE_SECONDS.

A relay may close a connection that waited (an idle timeout: the socket is closed, or 421 and
then closed). When a kept connection turns out to be gone at the next mail's MAIL or RCPT (no
reply, or 421), before its DATA, the relay has nothing of that mail, so it is sent once more on
a new connection; MAIL is the probe, no RSET or NOOP round trip is spent on it. A connection
lost from the DATA command on is never resent here: the relay may have taken the mail, so it
goes the way of any connection error (a temporary failure, retried later by the outbox).
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from mailgate.errors import PermanentFailure, TemporaryFailure

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = structlog.get_logger("mailgate.relay")

# QUIT at the end of a batch waits at most this long for the relay's goodbye.
QUIT_TIMEOUT_SECONDS = 5.0
# A connection is ended and a new one opened after this many mails or seconds, whichever comes
# first, as MTAs limit the reuse of a cached connection (relays may limit mails per session).
MAILS_PER_CONNECTION = 100
CONNECTION_REUSE_SECONDS = 300.0
# A relay's "service closing transmission channel" reply: the connection is over.
_CLOSING = 421


@dataclass(frozen=True)
class RelaySettings:
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 60.0
    local_hostname: str | None = None


def _failure(code: int, text: str) -> TemporaryFailure | PermanentFailure:
    reply = f"{code} {text}".strip()
    return PermanentFailure(reply) if 500 <= code < 600 else TemporaryFailure(reply)


def _decode(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class _Client(smtplib.SMTP):
    """smtplib.SMTP that remembers whether the current mail's DATA has begun."""

    content_started = False

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        self.content_started = True
        return super().data(msg)


def _gone_before_content(client: _Client, error: Exception) -> bool:
    """The connection ended before the mail's content was sent: the relay has nothing of it."""
    if client.content_started:
        return False
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return any(code == _CLOSING for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code == _CLOSING
    # Any other refusal is the relay's answer to this mail; a bare OSError is the socket failing.
    return not isinstance(error, smtplib.SMTPException)


def _mail_options(envelope_from: str, recipient: str, data: bytes) -> tuple[str, ...]:
    """("SMTPUTF8",) when an address or the header is not ASCII; smtplib raises
    SMTPNotSupportedError for it when the relay does not offer the extension."""
    header = data.partition(b"\r\n\r\n")[0]
    if envelope_from.isascii() and recipient.isascii() and header.isascii():
        return ()
    return ("SMTPUTF8",)


class SmtpRelay:
    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self._client: _Client | None = None
        self._mails_on_client = 0
        self._client_opened_at = 0.0
        # One sender at a time; `close` may come from another thread than the last `send`.
        self._lock = threading.Lock()

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        """Hand one mail to the relay; raises TemporaryFailure (retry) or PermanentFailure (give up)."""
        settings = self.settings
        with self._lock:
            try:
                self._send(envelope_from, recipient, data)
            except smtplib.SMTPNotSupportedError:
                raise PermanentFailure(
                    f"relay {settings.host}:{settings.port} does not offer SMTPUTF8, which this mail needs"
                    " (a non-ASCII address)"
                ) from None
            except smtplib.SMTPRecipientsRefused as error:
                self._keep_if_usable()
                code, text = next(iter(error.recipients.values()))
                raise _failure(code, _decode(text)) from None
            except (
                smtplib.SMTPSenderRefused,
                smtplib.SMTPDataError,
                smtplib.SMTPConnectError,
                smtplib.SMTPHeloError,
                smtplib.SMTPAuthenticationError,
            ) as error:
                self._keep_if_usable()
                raise _failure(error.smtp_code, _decode(error.smtp_error)) from None
            except (smtplib.SMTPException, OSError) as error:
                # Connection refused, timeouts, a dropped connection: the relay may be back later.
                self._discard()
                raise TemporaryFailure(f"relay {settings.host}:{settings.port} unreachable: {error}") from None
            except BaseException:
                self._discard()
                raise

    def close(self) -> None:
        """End the kept connection, if any, with QUIT; errors only mean it was gone already."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            self._quit(client)

    def _quit(self, client: _Client) -> None:
        try:
            if client.sock is not None:
                client.sock.settimeout(min(QUIT_TIMEOUT_SECONDS, self.settings.timeout_seconds))
            client.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            client.close()

    def _send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        options = _mail_options(envelope_from, recipient, data)
        client = self._client
        if client is not None and (
            self._mails_on_client >= MAILS_PER_CONNECTION
            or time.monotonic() - self._client_opened_at >= CONNECTION_REUSE_SECONDS
        ):
            self._client = None
            self._quit(client)
            client = None
        if client is not None:
            client.content_started = False
            self._mails_on_client += 1
            try:
                client.sendmail(envelope_from, [recipient], data, mail_options=options)
                return
            except (smtplib.SMTPException, OSError) as error:
                if not _gone_before_content(client, error):
                    raise
                log.info("relay_reconnecting", reason=str(error)[:200], note="the kept connection had closed")
                self._discard()
        client = self._connect()
        self._mails_on_client += 1
        client.sendmail(envelope_from, [recipient], data, mail_options=options)

    def _connect(self) -> _Client:
        settings = self.settings
        client = _Client(
            settings.host, settings.port, timeout=settings.timeout_seconds, local_hostname=settings.local_hostname
        )
        try:
            client.ehlo()
            if settings.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.username:
                client.login(settings.username, settings.password or "")
        except BaseException:
            client.close()
            raise
        self._client, self._mails_on_client, self._client_opened_at = client, 0, time.monotonic()
        return client

    def _keep_if_usable(self) -> None:
        """After a refusal smtplib has reset the transaction, or closed the socket on a 421."""
        if self._client is not None and self._client.sock is None:
            self._discard()

    def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
