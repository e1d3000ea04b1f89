"""IMAP ingest: one MailboxPoller per [[imap]] account imports a folder into the inbound queue (tier 2).

imapclient is synchronous, so each poller owns one IMAPClient and drives it from the daemon's loop
through `asyncio.to_thread`, one step at a time. A message is flagged, moved or deleted on the
server only after its raw bytes and the folder's new last UID are committed together.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import structlog
from imapclient import IMAPClient, SocketTimeout  # type: ignore[import-untyped]  # no py.typed marker
from imapclient.exceptions import IMAPClientError, LoginError  # type: ignore[import-untyped]

from mailgate.clock import Clock
from mailgate.config import ImapAccount
from mailgate.domain.mailbox import Mailbox
from mailgate.errors import MailgateError
from mailgate.store import imap_state, inbound
from mailgate.store.transaction import Store

log = structlog.get_logger("mailgate.ingest.imap")

OVERSIZED_FOLDER = "mailgate/oversized"
_SOCKET_TIMEOUT = SocketTimeout(connect=15.0, read=120.0)
_TOKEN_COMMAND_TIMEOUT = 30.0
# How long one idle_check blocks: the longest a stop request waits while the poller is in IDLE.
_IDLE_CHECK_SECONDS = 1.0
_BACKOFF_FIRST_SECONDS = 1.0
_BACKOFF_CAP_SECONDS = 300.0
# Messages downloaded and committed together are also capped in bytes, so memory stays bounded
# whatever batch_size is; a chunk always holds at least one message.
_CHUNK_BYTES = 32 * 1024 * 1024
_SEEN, _DELETED = b"\\Seen", b"\\Deleted"


class ImapError(MailgateError):
    """An account problem that is not the network's: no STARTTLS, a missing folder, a failed token command."""


class TokenCommandFailed(ImapError):
    """token_command gave no access token; reported like a failed login."""


def describe_error(error: BaseException, account: ImapAccount) -> str:
    """The error class in words an operator can act on; never includes a secret or a protocol trace."""
    where = f"{account.host}:{account.port}"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host {account.host!r}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(error, TimeoutError):
        return f"connection to {where} timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {getattr(error, 'reason', None) or _first_line(error)}"
    if isinstance(error, LoginError):
        return f"login failed: authentication failed ({_first_line(error)})"
    if isinstance(error, ImapError):
        return str(error)
    if isinstance(error, OSError):
        return f"network error talking to {where}: {error.strerror or type(error).__name__}"
    if isinstance(error, IMAPClientError):
        return f"IMAP error: {_first_line(error)}"
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    # imapclient formats the server's bytes reply with str(), which shows as b'...'.
    text = re.sub(r"\bb(['\"])(.*?)\1", r"\2", text)
    return text.splitlines()[0][:300] if text else type(error).__name__


class ImapConnection:
    """One logged-in IMAPClient and the typed operations mailgate needs; used by one thread at a time."""

    def __init__(self, client: Any, account: ImapAccount) -> None:
        self.client = client
        self.account = account
        self.capabilities = frozenset(bytes(c).upper() for c in client.capabilities())
        self._delimiter = _hierarchy_delimiter(client)

    @classmethod
    def open(cls, account: ImapAccount) -> ImapConnection:
        """Connect (TLS as configured, certificates verified) and log in."""
        # imapclient logs every command at DEBUG: no protocol trace may reach mailgate's log.
        logging.getLogger("imapclient").setLevel(logging.INFO)
        client = _connect(account)
        try:
            _login(client, account)
            return cls(client, account)
        except BaseException:
            _shutdown_quietly(client)
            raise

    @property
    def can_idle(self) -> bool:
        return b"IDLE" in self.capabilities

    def server_name(self, name: str) -> str:
        """Folder paths are configured with "/" between levels; the server may use another delimiter."""
        if self._delimiter and self._delimiter != "/":
            return name.replace("/", self._delimiter)
        return name

    def ensure_folder(self, name: str) -> None:
        folder = self.server_name(name)
        if self.client.folder_exists(folder):
            return
        try:
            self.client.create_folder(folder)
        except IMAPClientError as error:
            # Another importer may have created it a moment ago.
            if not self.client.folder_exists(folder):
                raise ImapError(f"cannot create folder {name!r}: {_first_line(error)}") from error

    def select(self) -> int:
        """Select the imported folder read-write; returns its UIDVALIDITY."""
        folder = self.server_name(self.account.folder)
        if not self.client.folder_exists(folder):
            raise ImapError(f"folder {self.account.folder!r} does not exist")
        response = self.client.select_folder(folder)
        return int(response[b"UIDVALIDITY"])

    def uids_after(self, last_uid: int) -> list[int]:
        # RFC 3501 6.4.8: "N:*" also matches the highest UID when it is below N, hence the filter.
        found = self.client.search(["UID", f"{last_uid + 1}:*", "NOT", "DELETED"])
        return sorted(uid for uid in found if uid > last_uid)

    def not_yet_disposed(self, last_uid: int) -> list[int]:
        """Imported messages still waiting for their after-import step (a crash came in between)."""
        if last_uid < 1:
            return []
        pending = ["UNSEEN"] if self.account.after_import == "seen" else ["NOT", "DELETED"]
        found = self.client.search(["UID", f"1:{last_uid}", *pending])
        return sorted(uid for uid in found if uid <= last_uid)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        fetched = self._fetch(uids, "RFC822.SIZE", b"RFC822.SIZE")
        return {uid: int(size) for uid, size in fetched.items()}

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        # BODY.PEEK: fetching must not set \Seen by itself (RFC 3501 6.4.5).
        return {uid: bytes(raw) for uid, raw in self._fetch(uids, "BODY.PEEK[]", b"BODY[]").items()}

    def headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        return {uid: bytes(raw) for uid, raw in self._fetch(uids, "BODY.PEEK[HEADER]", b"BODY[HEADER]").items()}

    def _fetch(self, uids: Sequence[int], item: str, key: bytes) -> dict[int, Any]:
        """One data item per requested UID; unsolicited FETCH responses (another client's flag
        changes, RFC 3501 7.4.2) may ride along and are dropped."""
        if not uids:
            return {}
        wanted = set(uids)
        fetched = self.client.fetch(uids, [item])
        return {uid: data[key] for uid, data in fetched.items() if uid in wanted and data.get(key) is not None}

    def move(self, uids: Sequence[int], name: str) -> None:
        folder = self.server_name(name)
        if b"MOVE" in self.capabilities:
            self.client.move(uids, folder)  # RFC 6851: atomic, no \Deleted copy left behind
            return
        self.client.copy(uids, folder)
        self._expunge(uids)

    def dispose(self, uids: Sequence[int]) -> None:
        """The configured after-import step for messages already committed to the queue."""
        if not uids:
            return
        if self.account.after_import == "move":
            self.move(uids, self.account.processed_folder)
        elif self.account.after_import == "seen":
            self.client.add_flags(uids, [_SEEN], silent=True)
        else:
            self._expunge(uids)

    def _expunge(self, uids: Sequence[int]) -> None:
        self.client.add_flags(uids, [_DELETED], silent=True)
        if b"UIDPLUS" in self.capabilities:
            self.client.uid_expunge(uids)  # RFC 4315: removes only these messages
        else:
            # Without UIDPLUS, EXPUNGE also removes what other clients marked \Deleted, which is
            # what they asked for; leaving ours would keep the folder growing.
            self.client.expunge()

    def idle_start(self) -> None:
        self.client.idle()

    def idle_check(self, timeout: float) -> list[Any]:
        return list(self.client.idle_check(timeout=timeout))

    def idle_done(self) -> None:
        self.client.idle_done()

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # Closing a broken connection: nothing to recover.
            _shutdown_quietly(self.client)


def _connect(account: ImapAccount) -> Any:
    # CPython's ssl module verifies certificates only with a context like this one.
    context = ssl.create_default_context() if account.tls != "none" else None
    implicit = account.tls == "implicit"
    client = IMAPClient(
        account.host, port=account.port, use_uid=True, ssl=implicit, ssl_context=context, timeout=_SOCKET_TIMEOUT
    )
    if account.tls == "starttls":
        try:
            # Never fall back to plaintext: a missing STARTTLS may be an attacker stripping it.
            if b"STARTTLS" not in {bytes(c).upper() for c in client.capabilities()}:
                raise ImapError(f"{account.host}:{account.port} does not offer STARTTLS; refusing plaintext")
            client.starttls(context)
        except BaseException:
            _shutdown_quietly(client)
            raise
    return client


def _login(client: Any, account: ImapAccount) -> None:
    if account.auth == "xoauth2":
        client.oauth2_login(account.username, _access_token(account))
    else:
        client.login(account.username, account.password)


def _access_token(account: ImapAccount) -> str:
    """Run token_command without a shell; its stdout is the token. Neither output is ever logged."""
    try:
        result = subprocess.run(
            list(account.token_command),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_TOKEN_COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TokenCommandFailed(f"token_command could not run: {type(error).__name__}") from None
    token = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0 or not token:
        raise TokenCommandFailed(
            f"token_command failed (exit status {result.returncode}, {len(token)} characters of output)"
        )
    return token


def _hierarchy_delimiter(client: Any) -> str | None:
    # RFC 3501 6.3.8: LIST "" "" returns the hierarchy delimiter of the root.
    listing = client.list_folders("", "")
    if not listing or listing[0][1] is None:
        return None
    delimiter = listing[0][1]
    return delimiter.decode() if isinstance(delimiter, bytes) else str(delimiter)


def _shutdown_quietly(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:  # Already closed or never fully open.
        return


def backoff_delay(failures: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    """1 s doubling to 300 s, plus up to half again as jitter so many pollers do not retry in step."""
    base = min(_BACKOFF_CAP_SECONDS, _BACKOFF_FIRST_SECONDS * float(2 ** min(failures, 16)))
    return min(_BACKOFF_CAP_SECONDS, base + rng(0, base / 2))


def chunks_by_size(sizes: dict[int, int], max_bytes: int = _CHUNK_BYTES) -> Iterator[list[int]]:
    """UIDs in order, grouped so that a group's total size stays under `max_bytes` (one at least)."""
    chunk: list[int] = []
    total = 0
    for uid in sorted(sizes):
        size = sizes[uid]
        if chunk and total + size > max_bytes:
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += size
    if chunk:
        yield chunk


def oversized_notice(size: int) -> str:
    return f"message of {size} bytes exceeds smtp.max_message_bytes; headers kept, body not downloaded"


def probe_account(account: ImapAccount) -> str:
    """For `check-config --connect`: "ok", or what is wrong with the account, in one line."""
    try:
        connection = ImapConnection.open(account)
    except Exception as error:  # Every failure is reported, whatever its class.
        return describe_error(error, account)
    try:
        connection.select()
        if account.after_import == "move":
            connection.ensure_folder(account.processed_folder)
        connection.ensure_folder(OVERSIZED_FOLDER)
        return "ok"
    except Exception as error:  # As above.
        return describe_error(error, account)
    finally:
        connection.close()


class MailboxPoller:
    """Imports one account's folder for the life of the daemon: import, IDLE or poll, repeat; reconnects on error."""

    def __init__(
        self,
        account: ImapAccount,
        store: Store,
        clock: Clock,
        *,
        label: str,
        mailboxes: tuple[Mailbox, ...],
        max_message_bytes: int,
        on_committed: Callable[[], None],
    ) -> None:
        self.account = account
        self.store = store
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.on_committed = on_committed
        self.envelope = inbound.Envelope("imap", "", _recipients(account, mailboxes), account.key[:100])
        self.failures = 0
        self.log = log.bind(imap=label, account=account.key)

    async def run(self, stop: asyncio.Event) -> None:
        """Import until `stop` is set; stops between chunks of messages, never inside one."""
        while not stop.is_set():
            failure: Exception | None = None
            connection: ImapConnection | None = None
            try:
                connection = await asyncio.to_thread(ImapConnection.open, self.account)
                await self._serve(connection, stop)
            except Exception as error:  # Any failure of the session means: log, back off, reconnect.
                failure = error
            if connection is not None:
                await asyncio.to_thread(connection.close)
            if failure is not None:
                await self._back_off(failure, stop)

    async def _serve(self, connection: ImapConnection, stop: asyncio.Event) -> None:
        self.log.info("imap_connected", tls=self.account.tls, idle=connection.can_idle)
        await asyncio.to_thread(self._prepare_folders, connection)
        first = True
        while not stop.is_set():
            imported = await self._import_all(connection, stop)
            self.failures = 0
            if stop.is_set():
                return
            if connection.can_idle:
                await self._idle(connection, stop, announce=first or imported > 0)
            else:
                await _wait(stop, self.account.poll_seconds)
            first = False

    def _prepare_folders(self, connection: ImapConnection) -> None:
        if self.account.after_import == "move":
            connection.ensure_folder(self.account.processed_folder)
        connection.ensure_folder(OVERSIZED_FOLDER)

    async def _import_all(self, connection: ImapConnection, stop: asyncio.Event) -> int:
        """Everything new in the folder, in batches of batch_size; returns how many were queued."""
        uidvalidity, last_uid = await asyncio.to_thread(self._sync_state, connection)
        leftovers = await asyncio.to_thread(connection.not_yet_disposed, last_uid)
        if leftovers:
            await asyncio.to_thread(self._dispose_by_size, connection, leftovers)
            self.log.info("imap_finished_after_import_step", count=len(leftovers))
        uids = await asyncio.to_thread(connection.uids_after, last_uid)
        imported = 0
        for start in range(0, len(uids), self.account.batch_size):
            batch = uids[start : start + self.account.batch_size]
            sizes = await asyncio.to_thread(connection.sizes, batch)
            for chunk in chunks_by_size(self._download_sizes(sizes)):
                if stop.is_set():
                    return imported
                imported += await self._import_chunk(connection, uidvalidity, chunk, sizes)
        return imported

    def _download_sizes(self, sizes: dict[int, int]) -> dict[int, int]:
        # Only the header of an oversized message is downloaded; count it as small.
        return {uid: size if size <= self.max_message_bytes else 0 for uid, size in sizes.items()}

    def _sync_state(self, connection: ImapConnection) -> tuple[int, int]:
        """Select the folder; a new UIDVALIDITY (RFC 3501 2.3.1.1) makes every stored UID meaningless."""
        uidvalidity = connection.select()
        state = self.store.run(imap_state.load_state, self.account.key)
        if state is not None and state.uidvalidity == uidvalidity:
            return uidvalidity, state.last_uid
        if state is not None:
            self.log.warning(
                "imap_uidvalidity_changed",
                old=state.uidvalidity,
                new=uidvalidity,
                note="re-scanning from UID 1; messages already stored are recognised by Message-ID",
            )
        self.store.run(imap_state.start_over, self.account.key, uidvalidity, self.clock.now())
        return uidvalidity, 0

    async def _import_chunk(
        self, connection: ImapConnection, uidvalidity: int, chunk: list[int], sizes: dict[int, int]
    ) -> int:
        queued, fetched = await asyncio.to_thread(self._commit_chunk, connection, uidvalidity, chunk, sizes)
        if queued:
            self.on_committed()
        # Only now, with the bytes committed, may the server copy change.
        await asyncio.to_thread(self._dispose_by_size, connection, fetched, sizes)
        self.log.info("imap_imported", count=len(queued), last_uid=chunk[-1])
        return len(queued)

    def _commit_chunk(
        self, connection: ImapConnection, uidvalidity: int, chunk: list[int], sizes: dict[int, int]
    ) -> tuple[list[int], list[int]]:
        """Download a chunk and commit it with the new last UID; returns (UIDs queued, UIDs fetched)."""
        oversized = [uid for uid in chunk if sizes[uid] > self.max_message_bytes]
        normal = [uid for uid in chunk if sizes[uid] <= self.max_message_bytes]
        messages = [imap_state.FetchedMessage(uid, raw) for uid, raw in connection.bodies(normal).items()]
        for uid, header in connection.headers(oversized).items():
            self.log.warning("imap_message_oversized", uid=uid, size=sizes[uid], folder=OVERSIZED_FOLDER)
            messages.append(imap_state.FetchedMessage(uid, header, oversized_notice(sizes[uid])))
        queued = self.store.run(
            imap_state.record_batch,
            self.account.key,
            uidvalidity,
            messages,
            self.envelope,
            up_to_uid=chunk[-1],
            now=self.clock.now(),
        )
        return queued, sorted(m.uid for m in messages)

    def _dispose_by_size(
        self, connection: ImapConnection, uids: list[int], sizes: dict[int, int] | None = None
    ) -> None:
        """Committed messages leave the folder: oversized ones to OVERSIZED_FOLDER, the rest as configured."""
        if sizes is None:
            sizes = connection.sizes(uids)
        oversized = [uid for uid in uids if sizes.get(uid, 0) > self.max_message_bytes]
        if oversized:
            connection.move(oversized, OVERSIZED_FOLDER)
        connection.dispose([uid for uid in uids if uid not in set(oversized)])

    async def _idle(self, connection: ImapConnection, stop: asyncio.Event, *, announce: bool) -> None:
        """RFC 2177 IDLE until new mail, a stop request or idle_seconds (re-issued before the 29-minute limit)."""
        await asyncio.to_thread(connection.idle_start)
        (self.log.info if announce else self.log.debug)("imap_idle", renew_seconds=self.account.idle_seconds)
        deadline = time.monotonic() + self.account.idle_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            responses = await asyncio.to_thread(connection.idle_check, _IDLE_CHECK_SECONDS)
            if any(_is_response(r, b"BYE") for r in responses):
                raise ImapError("the server closed the connection (BYE)")
            if any(_is_response(r, b"EXISTS") for r in responses):
                break
            if not responses and time.monotonic() - started < _IDLE_CHECK_SECONDS / 2:
                # Readable yet nothing parsed: the peer may have gone. DONE below tells for sure.
                break
        await asyncio.to_thread(connection.idle_done)

    async def _back_off(self, error: Exception, stop: asyncio.Event) -> None:
        delay = round(backoff_delay(self.failures), 1)
        self.failures += 1
        reason = describe_error(error, self.account)
        if isinstance(error, LoginError | TokenCommandFailed):
            self.log.error("imap_login_failed", error=reason, retry_seconds=delay)
        else:
            self.log.warning("imap_reconnecting", error=reason, retry_seconds=delay)
        await _wait(stop, delay)


def start_pollers(
    accounts: tuple[ImapAccount, ...],
    store: Store,
    clock: Clock,
    *,
    mailboxes: tuple[Mailbox, ...],
    max_message_bytes: int,
    on_committed: Callable[[], None],
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    """One task per account, each with its own connection; they end when `stop` is set."""
    tasks = []
    for index, account in enumerate(accounts):
        label = f"imap[{index}]"
        poller = MailboxPoller(
            account,
            store,
            clock,
            label=label,
            mailboxes=mailboxes,
            max_message_bytes=max_message_bytes,
            on_committed=on_committed,
        )
        tasks.append(asyncio.create_task(poller.run(stop), name=label))
    return tasks


def _recipients(account: ImapAccount, mailboxes: tuple[Mailbox, ...]) -> tuple[str, ...]:
    """A configured queue acts as the envelope recipient; otherwise filing reads To/Cc (filing._queues)."""
    if account.queue is None:
        return ()
    return next(((m.address,) for m in mailboxes if m.queue == account.queue), ())


def _is_response(response: Any, kind: bytes) -> bool:
    return isinstance(response, tuple) and len(response) > 1 and kind in (response[0], response[1])


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
