"""SMTP load: N client threads, each one SMTP session reused for all its messages, as MTAs do.

Each message is `MAIL FROM`, `RCPT TO`, `DATA` on the open session (smtplib's low-level calls).
Two latencies are taken per message: from the moment the final dot left the client (the last
`send` inside `data()`) to the server's reply, and the whole `data()` call (DATA, 354, body,
dot, reply). Conversations stay on one connection, so a reply is always sent after its request
was accepted. A 4xx answer is retried after a pause (bounded); a dropped connection is reopened.
With several daemons, the connections are dealt to their listeners in turn.
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bench.corpus import SUPPORT_ADDRESS, Mail

SESSION_MODE = "one SMTP session per client connection, reused for all of its messages (EHLO once)"
MAX_RETRIES = 20


class TimedSMTP(smtplib.SMTP):
    """smtplib.SMTP that notes when the last bytes of a command or message were written."""

    last_sent_at = 0.0

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        super().send(s)
        self.last_sent_at = time.perf_counter()


@dataclass
class ClientResult:
    dot_to_reply: list[float] = field(default_factory=list)
    data_call: list[float] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    accepted: int = 0
    retries: int = 0
    reconnects: int = 0
    error: str | None = None
    port: int = 0


@dataclass
class LoadResult:
    connections: int
    started: float
    finished: float
    clients: list[ClientResult]

    @property
    def accepted(self) -> int:
        return sum(client.accepted for client in self.clients)

    @property
    def errors(self) -> list[str]:
        return [client.error for client in self.clients if client.error]

    def latencies(self, attribute: str) -> list[float]:
        return [value for client in self.clients for value in getattr(client, attribute)]

    @property
    def last_accept(self) -> float:
        return max((t for client in self.clients for t in client.accepted_at), default=self.finished)


def partition(corpus: Sequence[Mail], connections: int) -> list[list[Mail]]:
    """Conversations dealt to connections round robin; each keeps its mails in corpus order."""
    shares: list[list[Mail]] = [[] for _ in range(connections)]
    for mail in corpus:
        shares[mail.spec.conversation % connections].append(mail)
    return shares


def send_one(client: TimedSMTP, mail: Mail, result: ClientResult, sender: str | None = None) -> None:
    """One transaction on an open session; raises on a refusal that is not temporary."""
    code, reply = client.mail(sender or mail.sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender or mail.sender)
    code, reply = client.rcpt(SUPPORT_ADDRESS)
    if code != 250:
        raise smtplib.SMTPRecipientsRefused({SUPPORT_ADDRESS: (code, reply)})
    before = time.perf_counter()
    code, reply = client.data(mail.raw)
    done = time.perf_counter()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    result.dot_to_reply.append(done - client.last_sent_at)
    result.data_call.append(done - before)
    result.accepted_at.append(done)
    result.accepted += 1


class Client(threading.Thread):
    """Sends its share over one session, reconnecting only when the server drops it."""

    def __init__(
        self, port: int, mails: Iterable[Mail], deadline: float, pace: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(daemon=True, name="smtp-client")
        self.port = port
        self.mails = mails
        self.deadline = deadline
        self.pace = pace
        self.result = ClientResult(port=port)
        self.start_gate = threading.Event()

    def run(self) -> None:
        self.start_gate.wait(timeout=60)
        client: TimedSMTP | None = None
        try:
            for number, mail in enumerate(self.mails):
                if self.pace is not None:
                    self.pace(number)
                client = self._deliver(client, mail)
        except Exception as error:  # reported in the results, never lost in a thread
            self.result.error = f"{type(error).__name__}: {error}"
        finally:
            if client is not None:
                quit_quietly(client)

    def _deliver(self, client: TimedSMTP | None, mail: Mail) -> TimedSMTP:
        for _attempt in range(MAX_RETRIES):
            if time.monotonic() > self.deadline:
                raise TimeoutError("the load did not finish before its deadline")
            try:
                if client is None:
                    client = connect(self.port)
                send_one(client, mail, self.result)
                return client
            except smtplib.SMTPResponseException as error:
                if not 400 <= error.smtp_code < 500:
                    raise
                self.result.retries += 1
                _rset(client)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self.result.reconnects += 1
                client = None
            time.sleep(0.05)
        raise RuntimeError(f"{mail.message_id} not accepted after {MAX_RETRIES} attempts")


def connect(port: int) -> TimedSMTP:
    client = TimedSMTP("127.0.0.1", port, local_hostname="client.example", timeout=60)
    client.ehlo()
    return client


def _rset(client: TimedSMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(smtplib.SMTPException):
            client.rset()


def quit_quietly(client: TimedSMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


Pacer = Callable[[int], Callable[[int], None]]


def run_load(
    port: int | Sequence[int], shares: Sequence[Iterable[Mail]], timeout: float, pacer: Pacer | None = None
) -> LoadResult:
    """Start one client per share at the same moment; wait for all (bounded by `timeout`).

    `port` is one listener, or several (one per daemon): client i then talks to port i mod len,
    so the connections are spread evenly and each conversation stays on its one session.
    `pacer(client_index)` gives a client the function it calls before its n-th message.
    """
    ports = [port] if isinstance(port, int) else list(port)
    deadline = time.monotonic() + timeout
    clients = [
        Client(ports[index % len(ports)], share, deadline, pacer(index) if pacer else None)
        for index, share in enumerate(shares)
    ]
    for client in clients:
        client.start()
    started = time.perf_counter()
    for client in clients:
        client.start_gate.set()
    for client in clients:
        client.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    finished = time.perf_counter()
    stuck = [client for client in clients if client.is_alive()]
    for client in stuck:
        client.result.error = client.result.error or "still running at the deadline"
    return LoadResult(len(clients), started, finished, [client.result for client in clients])
