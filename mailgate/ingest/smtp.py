"""SMTP/LMTP ingest with aiosmtpd on an asyncio loop (the daemon's, or its acceptance process's).

RCPT accepts only our mailboxes (never an open relay); DATA answers 250 only after the raw bytes
are committed (concurrent sessions share a commit: group_commit.py); every failure is a 4xx the
client retries, never aiosmtpd's default `500 Error`, which would bounce the customer's mail and
leak exception text.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from mailgate.domain.mailbox import Mailbox
from mailgate.errors import StorageFull, TemporaryFailure
from mailgate.ingest.group_commit import GroupCommitter
from mailgate.ingest.smtp_data import read_mail_data
from mailgate.rules.routing import resolve_mailbox
from mailgate.store import inbound

log = structlog.get_logger("mailgate.ingest.smtp")

# Connections the kernel holds before they are accepted (asyncio's default is 100).
LISTEN_BACKLOG = 128

# aiosmtpd's size replies carry no enhanced status code (RFC 3463); 5.3.4 is "message too big".
_REPLY_REWRITES = {
    b"552 Error: Too much mail data": b"552 5.3.4 Message too big for system",
    b"552 Error: message size exceeds fixed maximum message size": b"552 5.3.4 Message too big for system",
}


class ConnectionLimiter:
    """Caps connections overall and per client address, and refuses all while shutting down."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.by_ip: Counter[str] = Counter()
        self.closing = False

    def refusal(self, ip: str) -> bytes | None:
        """The 421 line to send instead of a greeting, or None to admit the client."""
        if self.closing:
            return b"421 4.3.2 Service shutting down; try again later\r\n"
        if self.by_ip.total() >= self.max_total:
            return b"421 4.3.2 Too many connections; try again later\r\n"
        if self.by_ip[ip] >= self.max_per_ip:
            return b"421 4.7.0 Too many connections from your address; try again later\r\n"
        return None

    def admit(self, ip: str) -> None:
        self.by_ip[ip] += 1

    def release(self, ip: str) -> None:
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]


class _GuardedProtocol:
    """Connection caps and enhanced size codes, mixed into aiosmtpd's SMTP and LMTP classes."""

    limiter: ConnectionLimiter
    _admitted_ip: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._admitted_ip is None and getattr(self, "_original_transport", None) is None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "unknown"
            refusal = self.limiter.refusal(ip)
            if refusal is not None:
                log.warning("smtp_connection_refused", peer=ip, reason=refusal.decode().strip())
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal)
                transport.close()
                return
            self.limiter.admit(ip)
            self._admitted_ip = ip
        super().connection_made(transport)  # type: ignore[misc]  # cooperative mixin over SMTP

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted_ip is None:
            return
        self.limiter.release(self._admitted_ip)
        self._admitted_ip = None
        super().connection_lost(error)  # type: ignore[misc]  # cooperative mixin over SMTP

    async def push(self, status: str | bytes) -> None:
        encoded = status.encode("ascii", "replace") if isinstance(status, str) else status
        await super().push(_REPLY_REWRITES.get(encoded, encoded))  # type: ignore[misc]  # mixin over SMTP

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA command with the data read in runs, not lines (smtp_data.py)."""
        protocol: Any = self  # the SMTP (or LMTP) this class is mixed into
        if await protocol.check_helo_needed() or await protocol.check_auth_needed("DATA"):
            return
        if not protocol.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_mail_data(
                protocol._reader, size_limit=protocol.data_size_limit, line_limit=protocol.line_length_limit
            )
        except asyncio.IncompleteReadError:
            log.info("smtp_connection_lost_during_data")
            protocol._writer.close()
            return
        if data.refusal is not None:
            await self.push(data.refusal)
            protocol._set_post_data_state()
            return
        protocol.envelope.content = protocol.envelope.original_content = data.content
        status = await protocol._call_handler_hook("DATA")
        protocol._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


class GuardedSMTP(_GuardedProtocol, SMTP):
    pass


class GuardedLMTP(_GuardedProtocol, LMTP):
    pass


class SmtpIngestHandler:
    """aiosmtpd handler: RCPT checks the mailbox, DATA commits the raw bytes, errors become 451."""

    def __init__(
        self,
        committer: GroupCommitter,
        mailboxes: tuple[Mailbox, ...],
        *,
        lmtp: bool,
        on_queued: Callable[[str], None],
    ) -> None:
        self.committer = committer
        # Replaced as a whole by App.reload (SIGHUP); each RCPT reads it once.
        self.mailboxes = mailboxes
        self.lmtp = lmtp
        # Called with the source ("smtp"/"lmtp") once a message is durable, before its 250.
        self.on_queued = on_queued

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str, rcpt_options: list[str]
    ) -> str:
        if resolve_mailbox(address, self.mailboxes) is None:
            log.info("smtp_recipient_refused", recipient=address, peer=_peer(session))
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or b""
        recipients = tuple(envelope.rcpt_tos)
        source = "lmtp" if self.lmtp else "smtp"
        queued = inbound.Envelope(source, envelope.mail_from or "", recipients, _peer(session))
        try:
            inbound_id = await self.committer.enqueue(raw, queued)
        except StorageFull as error:
            log.error("inbound_enqueue_failed", error=str(error), peer=queued.peer)
            return self._reply(recipients, "452 4.3.1 Insufficient system storage; try again later")
        except TemporaryFailure as error:
            log.error("inbound_enqueue_failed", error=str(error), peer=queued.peer)
            return self._reply(recipients, "451 4.3.0 Temporary storage failure; try again later")
        log.info("inbound_queued", inbound_id=inbound_id, source=source, size=len(raw), peer=queued.peer)
        self.on_queued(source)
        return self._reply(recipients, f"250 2.0.0 Queued as {inbound_id}")

    def _reply(self, recipients: tuple[str, ...], line: str) -> str:
        # LMTP (RFC 2033) answers DATA once per accepted recipient.
        if self.lmtp:
            return "\r\n".join(line for _ in recipients) or line
        return line

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp_session_error", error_type=type(error).__name__, exc_info=error)
        return "451 4.3.0 Internal error; try again later"


def _peer(session: SmtpSession) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return str(peer or "")


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: the OS picks one). Bound before any process serves it, so a
    port already in use fails the start, and the acceptance process can inherit it."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


async def start_smtp_server(
    handler: SmtpIngestHandler,
    limiter: ConnectionLimiter,
    listener: socket.socket,
    *,
    hostname: str,
    max_message_bytes: int,
    idle_timeout: float,
) -> asyncio.Server:
    """Serve SMTP/LMTP on `listener` from the running loop (not aiosmtpd's threaded Controller)."""
    protocol_class = GuardedLMTP if handler.lmtp else GuardedSMTP
    loop = asyncio.get_running_loop()

    def make_protocol() -> SMTP:
        protocol = protocol_class(
            handler,
            data_size_limit=max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident="mailgate",
            timeout=idle_timeout,
            loop=loop,
        )
        protocol.limiter = limiter
        return protocol

    return await loop.create_server(make_protocol, sock=listener)
