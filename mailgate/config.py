"""TOML configuration read once at start into frozen dataclasses (tier 2).

Unknown keys and malformed values are errors that name the key path, the expected form and the
value found: `smtp.listen: expected "HOST:PORT", got '2525'`. Each component receives its own
section object, never the whole file.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mailgate.domain.mailbox import Agent, Mailbox
from mailgate.errors import ConfigError
from mailgate.mail.limits import ParseLimits
from mailgate.notify.templates_index import template_names
from mailgate.rules.config_schema import RULES_SECTION_KEYS, RulesConfig, read_rules_section
from mailgate.toml_tables import TomlTable as _Table
from mailgate.toml_tables import email_address as _parse_address
from mailgate.toml_tables import positive_int as _positive
from mailgate.toml_tables import positive_number as _positive_number
from mailgate.toml_tables import read_toml_file

T = TypeVar("T")

DEFAULT_MAILBOX = "support@example.com"


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path
    database_url: str
    busy_timeout_seconds: float = 5.0
    # Attachment files (content-addressed); several instances on one PostgreSQL share one directory.
    attachments_dir: Path | None = None

    @property
    def blobs_dir(self) -> Path:
        return self.attachments_dir or self.data_dir / "attachments"


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 2525
    lmtp: bool = False
    hostname: str = "mailgate"
    max_message_bytes: int = 25 * 1024 * 1024
    max_connections: int = 200
    max_connections_per_ip: int = 20
    idle_timeout_seconds: float = 300.0
    # SMTP sessions in a process of their own, so that acceptance and filing use two cores.
    separate_process: bool = True


@dataclass(frozen=True)
class HelpdeskConfig:
    name: str = "Support"
    subject_tag: str = "Support"
    domain: str = "example.com"


@dataclass(frozen=True)
class OutgoingConfig:
    relay_host: str = "127.0.0.1"
    relay_port: int = 25
    from_address: str = DEFAULT_MAILBOX
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    max_age_hours: float = 48.0
    max_automatic_per_minute: int = 120
    bounce_block_days: int = 60
    # Outgoing mail rendered and relayed by a process of its own, on another core than filing.
    separate_process: bool = True


@dataclass(frozen=True)
class NotifyConfig:
    templates_dir: Path | None = None
    default_language: str = "en"


@dataclass(frozen=True)
class SecurityConfig:
    secret_file: Path
    # The authserv-id of the MTA in front whose Authentication-Results may verify agents (DKIM).
    trusted_authserv_id: str | None = None


# More filing processes than this only queue up for the one SQLite writer or PostgreSQL's locks.
MAX_FILING_PROCESSES = 16


def default_filing_processes() -> int:
    """`processes = "auto"`: 2 where this process may run on two or more cores, else 1. Measured
    on 2 cores at 16 SMTP connections: SQLite 190 -> 236 messages/s end to end, PostgreSQL
    87 -> 102; more only queue up for the one SQLite writer."""
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def _process_count(value: Any) -> int | None:
    if value == "auto":
        return default_filing_processes()
    count = _positive(value)
    return count if count is not None and count <= MAX_FILING_PROCESSES else None


@dataclass(frozen=True)
class WorkerConfig:
    max_attempts: int = 3
    claim_timeout_seconds: float = 300.0
    # Processes filing mail: the daemon's own worker, and processes - 1 filing processes beside it
    # (the configuration's default, "auto", is default_filing_processes()).
    processes: int = 1


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class DaemonConfig:
    """Process lifecycle: how long SIGTERM may take before the process exits anyway."""

    shutdown_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class HttpConfig:
    """The health and metrics listener; `listen` None (the key absent) means no listener."""

    listen: tuple[str, int] | None = None


# RFC 2177: a server may log off a client idle for 30 minutes, so IDLE is re-issued within 29.
_IMAP_MAX_IDLE_SECONDS = 29 * 60
_IMAP_TLS = ("implicit", "starttls", "none")
_IMAP_AFTER_IMPORT = ("move", "seen", "delete")
_IMAP_AUTH = ("password", "xoauth2")


@dataclass(frozen=True)
class ImapAccount:
    """One IMAP folder to import; secrets are left out of repr so no log line or traceback shows them.

    `queue` None means: the queue of a mailbox named in To/Cc, else the first mailbox's queue.
    """

    host: str
    username: str
    port: int = 993
    tls: str = "implicit"
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    queue: str | None = None
    after_import: str = "move"
    processed_folder: str = "mailgate/processed"
    poll_seconds: float = 60.0
    idle_seconds: float = 600.0
    batch_size: int = 100
    auth: str = "password"
    token_command: tuple[str, ...] = field(default=(), repr=False)

    @property
    def key(self) -> str:
        """The account and folder as the import state names them: username@host:port/folder."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class Config:
    storage: StorageConfig
    security: SecurityConfig
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    helpdesk: HelpdeskConfig = field(default_factory=HelpdeskConfig)
    mailboxes: tuple[Mailbox, ...] = (Mailbox(DEFAULT_MAILBOX, "support"),)
    outgoing: OutgoingConfig = field(default_factory=OutgoingConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    agents: tuple[Agent, ...] = ()
    limits: ParseLimits = field(default_factory=ParseLimits)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    imap: tuple[ImapAccount, ...] = ()
    rules: RulesConfig = field(default_factory=RulesConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    http: HttpConfig = field(default_factory=HttpConfig)

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address that is this help desk itself: mailboxes and the sender address."""
        return frozenset({m.address for m in self.mailboxes} | {self.outgoing.from_address})

    @property
    def agent_addresses(self) -> frozenset[str]:
        return frozenset(agent.email for agent in self.agents)


def _parse_listen(value: Any) -> tuple[str, int] | None:
    if not isinstance(value, str):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


def _non_negative(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _read_smtp(table: _Table) -> SmtpConfig:
    defaults = SmtpConfig()
    host, port = table.convert("listen", (defaults.host, defaults.port), '"HOST:PORT"', _parse_listen)
    smtp = SmtpConfig(
        host=host,
        port=port,
        lmtp=table.get("lmtp", bool, False, "true or false"),
        hostname=table.get("hostname", str, defaults.hostname, "a host name"),
        max_message_bytes=table.convert(
            "max_message_bytes", defaults.max_message_bytes, "a positive integer", _positive
        ),
        max_connections=table.convert("max_connections", defaults.max_connections, "a positive integer", _positive),
        max_connections_per_ip=table.convert(
            "max_connections_per_ip", defaults.max_connections_per_ip, "a positive integer", _positive
        ),
        idle_timeout_seconds=table.convert(
            "idle_timeout_seconds", defaults.idle_timeout_seconds, "a positive number of seconds", _positive_number
        ),
        separate_process=table.get("separate_process", bool, defaults.separate_process, "true or false"),
    )
    table.finish()
    return smtp


def _read_mailboxes(tables: list[_Table]) -> tuple[Mailbox, ...]:
    mailboxes = []
    for table in tables:
        address = table.convert("address", "", "an email address", _parse_address)
        if not address:
            raise ConfigError(table.key("address"), "an email address (the key is required)")
        queue = table.get("queue", str, "support", "a queue name")
        language = table.convert("language", None, '"en", "fi" or "lt"', _parse_language)
        reopen_days = table.convert("reopen_days", 0, "a number of days (0: never reopen a closed ticket)",
                                    _non_negative)
        table.finish()
        mailboxes.append(Mailbox(address, queue, language, reopen_days))
    if not mailboxes:
        return (Mailbox(DEFAULT_MAILBOX, "support"),)
    return tuple(mailboxes)


def _read_agents(tables: list[_Table]) -> tuple[Agent, ...]:
    agents = []
    for table in tables:
        email = table.convert("email", "", "an email address", _parse_address)
        if not email:
            raise ConfigError(table.key("email"), "an email address (the key is required)")
        name = table.get("name", str, email, "a name")
        queues = table.get("queues", list, [], "a list of queue names")
        if not all(isinstance(queue, str) for queue in queues):
            raise ConfigError(table.key("queues"), "a list of queue names", queues)
        table.finish()
        agents.append(Agent(email, name, tuple(queues)))
    return tuple(agents)


def _read_limits(table: _Table) -> ParseLimits:
    defaults = ParseLimits()
    values = {
        name: table.convert(name, getattr(defaults, name), "a positive integer", _positive)
        for name in ParseLimits.__dataclass_fields__
    }
    table.finish()
    return ParseLimits(**values)


def _read_storage(table: _Table, base: Path) -> StorageConfig:
    data_dir = Path(table.get("data_dir", str, "mailgate-data", "a directory path"))
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    default_url = f"sqlite:///{data_dir / 'mailgate.sqlite3'}"
    url = table.get("database_url", str, default_url, 'a URL such as "sqlite:///PATH" or "postgresql://HOST/DB"')
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError(table.key("database_url"), 'a "sqlite:///PATH" or "postgresql://..." URL', url)
    busy = table.convert("busy_timeout_seconds", 5.0, "a positive number of seconds", _positive_number)
    attachments = table.optional("attachments_dir", str, "a directory path")
    attachments_dir = base / attachments if attachments is not None else None
    table.finish()
    return StorageConfig(
        data_dir=data_dir, database_url=url, busy_timeout_seconds=busy, attachments_dir=attachments_dir
    )


def _read_imap(tables: list[_Table], mailboxes: tuple[Mailbox, ...], base: Path) -> tuple[ImapAccount, ...]:
    """The [[imap]] accounts; two entries importing the same folder would fight over one state row."""
    accounts: list[ImapAccount] = []
    for table in tables:
        account = _read_imap_account(table, mailboxes, base)
        for index, other in enumerate(accounts):
            if other.key == account.key:
                expected = f"a folder not already imported by imap[{index}]"
                raise ConfigError(table.key("folder"), expected, account.folder)
        accounts.append(account)
    return tuple(accounts)


def _read_imap_account(table: _Table, mailboxes: tuple[Mailbox, ...], base: Path) -> ImapAccount:
    host = _required_string(table, "host", "a host name")
    username = _required_string(table, "username", "a user name")
    tls = table.convert("tls", "implicit", '"implicit", "starttls" or "none"', _one_of(_IMAP_TLS))
    if tls == "none" and not _is_loopback(host):
        raise ConfigError(table.key("tls"), '"implicit" or "starttls" ("none" only for a loopback host)', tls)
    auth = table.convert("auth", "password", '"password" or "xoauth2"', _one_of(_IMAP_AUTH))
    password, token_command = _read_imap_secret(table, auth, base)
    folder = _required_string(table, "folder", "a folder name", "INBOX")
    after_import = table.convert("after_import", "move", '"move", "seen" or "delete"', _one_of(_IMAP_AFTER_IMPORT))
    processed = _required_string(table, "processed_folder", "a folder name", "mailgate/processed")
    if after_import == "move" and processed == folder:
        raise ConfigError(table.key("processed_folder"), "a folder other than the imported one", processed)
    account = ImapAccount(
        host=host,
        username=username,
        port=table.convert("port", 993 if tls == "implicit" else 143, "a port number", _port_number),
        tls=tls,
        password=password,
        folder=folder,
        queue=_read_imap_queue(table, mailboxes),
        after_import=after_import,
        processed_folder=processed,
        poll_seconds=table.convert("poll_seconds", 60.0, "a positive number of seconds", _positive_number),
        idle_seconds=table.convert(
            "idle_seconds", 600.0, f"seconds, at most {_IMAP_MAX_IDLE_SECONDS} (RFC 2177)", _idle_seconds
        ),
        batch_size=table.convert("batch_size", 100, "a positive integer", _positive),
        auth=auth,
        token_command=token_command,
    )
    table.finish()
    return account


def _read_imap_secret(table: _Table, auth: str, base: Path) -> tuple[str, tuple[str, ...]]:
    """The password (from the file, read now) or the token command; never echoes a secret in an error."""
    password = _secret_string(table, "password")
    password_file = _secret_string(table, "password_file")
    command = _secret_string(table, "token_command")
    if auth == "xoauth2":
        for name, value in (("password", password), ("password_file", password_file)):
            if value:
                raise ConfigError(table.key(name), 'no password with auth = "xoauth2" (token_command gives the token)')
        return "", _token_argv(table, command)
    if command:
        raise ConfigError(table.key("token_command"), 'no token_command unless auth = "xoauth2"')
    if password and password_file:
        raise ConfigError(table.key("password_file"), "either password or password_file, not both")
    if password_file:
        return _read_secret_file(table.key("password_file"), Path(password_file), base), ()
    if not password:
        raise ConfigError(table.key("password"), "a password or a password_file (one is required)")
    return password, ()


def _token_argv(table: _Table, command: str) -> tuple[str, ...]:
    # Split like a shell but run without one, so nothing in the line is interpreted.
    try:
        argv = tuple(shlex.split(command))
    except ValueError:
        raise ConfigError(table.key("token_command"), "a command line with balanced quotes") from None
    if not argv:
        raise ConfigError(table.key("token_command"), 'a command printing an access token (required for "xoauth2")')
    return argv


def _read_secret_file(key: str, path: Path, base: Path) -> str:
    file = path if path.is_absolute() else base / path
    try:
        secret = file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(key, "a readable UTF-8 file holding the password", str(file)) from None
    if not secret:
        raise ConfigError(key, "a file holding the password, not an empty one", str(file))
    return secret


def _secret_string(table: _Table, name: str) -> str:
    """Like `get`, but a malformed value is not quoted back: it may be the secret itself."""
    table.used.add(name)
    value = table.data.get(name, "")
    if not isinstance(value, str):
        raise ConfigError(table.key(name), "a string")
    return value


def _required_string(table: _Table, name: str, expected: str, default: str = "") -> str:
    value = table.get(name, str, default, expected)
    if not value.strip():
        raise ConfigError(table.key(name), f"{expected} (the key is required and cannot be empty)")
    return value.strip()


def _read_imap_queue(table: _Table, mailboxes: tuple[Mailbox, ...]) -> str | None:
    queue = table.get("queue", str, "", "a queue name")
    if not queue:
        return None
    queues = list(dict.fromkeys(m.queue for m in mailboxes))
    if queue not in queues:
        raise ConfigError(table.key("queue"), f"the queue of a [[mailboxes]] entry ({', '.join(queues)})", queue)
    return queue


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: value if isinstance(value, str) and value in choices else None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port_number(value: Any) -> int | None:
    return value if _positive(value) is not None and value <= 65535 else None


def _idle_seconds(value: Any) -> float | None:
    seconds = _positive_number(value)
    return seconds if seconds is not None and seconds <= _IMAP_MAX_IDLE_SECONDS else None


def build_config(data: dict[str, Any], base: Path) -> Config:
    """Validate a parsed TOML document; relative paths are taken from `base`."""
    root = _Table("", data)
    storage = _read_storage(root.table("storage"), base)
    smtp = _read_smtp(root.table("smtp"))
    mailboxes = _read_mailboxes(root.tables("mailboxes"))
    helpdesk_table = root.table("helpdesk")
    name = helpdesk_table.get("name", str, "Support", "a name")
    helpdesk = HelpdeskConfig(
        name=name,
        subject_tag=helpdesk_table.get("subject_tag", str, name, 'a short tag such as "Acme Support"'),
        domain=helpdesk_table.get("domain", str, mailboxes[0].address.partition("@")[2], "a domain name"),
    )
    if not helpdesk.subject_tag.strip() or any(c in helpdesk.subject_tag for c in "[]#\r\n"):
        raise ConfigError("helpdesk.subject_tag", "text without [ ] # or line breaks", helpdesk.subject_tag)
    helpdesk_table.finish()
    outgoing = _read_outgoing(root.table("outgoing"), mailboxes, base)
    notify = _read_notify(root.table("notify"), base)
    security = _read_security(root.table("security"), storage, base)
    worker_table = root.table("worker")
    worker = WorkerConfig(
        max_attempts=worker_table.convert("max_attempts", 3, "a positive integer", _positive),
        claim_timeout_seconds=worker_table.convert(
            "claim_timeout_seconds", 300.0, "a positive number of seconds", _positive_number
        ),
        processes=worker_table.convert(
            "processes",
            default_filing_processes(),
            f'"auto" or an integer from 1 to {MAX_FILING_PROCESSES}',
            _process_count,
        ),
    )
    worker_table.finish()
    logging_table = root.table("logging")
    logging = LoggingConfig(
        level=logging_table.convert("level", "info", '"debug", "info", "warning" or "error"', _parse_level),
        format=logging_table.convert("format", "auto", '"auto", "json" or "console"', _parse_log_format),
    )
    logging_table.finish()
    agents = _read_agents(root.tables("agents"))
    config = Config(
        storage=storage,
        smtp=smtp,
        helpdesk=helpdesk,
        mailboxes=mailboxes,
        outgoing=outgoing,
        notify=notify,
        security=security,
        agents=agents,
        limits=_read_limits(root.table("limits")),
        worker=worker,
        logging=logging,
        imap=_read_imap(root.tables("imap"), mailboxes, base),
        rules=_read_rules(root, data, notify, agents, mailboxes),
        daemon=_read_daemon(root.table("daemon")),
        http=_read_http(root.table("http")),
    )
    root.finish()
    return config


def _read_daemon(table: _Table) -> DaemonConfig:
    daemon = DaemonConfig(
        shutdown_timeout_seconds=table.convert(
            "shutdown_timeout_seconds", 30.0, "a positive number of seconds", _positive_number
        )
    )
    table.finish()
    return daemon


def _read_http(table: _Table) -> HttpConfig:
    # No default address: the listener exists only when the operator names one.
    http = HttpConfig(listen=table.convert("listen", None, '"HOST:PORT" such as "127.0.0.1:9025"', _parse_listen))
    table.finish()
    return http


def _read_rules(
    root: _Table, data: dict[str, Any], notify: NotifyConfig, agents: tuple[Agent, ...], mailboxes: tuple[Mailbox, ...]
) -> RulesConfig:
    """The rules sections ([sla], [[rules]], ...) are validated by the rules package itself."""
    root.used.update(RULES_SECTION_KEYS)
    return read_rules_section(
        data,
        known_templates=template_names(notify.templates_dir),
        known_agents=[agent.email for agent in agents],
        known_queues=[mailbox.queue for mailbox in mailboxes],
    )


def _read_outgoing(table: _Table, mailboxes: tuple[Mailbox, ...], base: Path) -> OutgoingConfig:
    password = _secret_string(table, "password") or None
    password_file = table.optional("password_file", str, "a file holding the relay password")
    if password is not None and password_file is not None:
        raise ConfigError(table.key("password_file"), "either password or password_file, not both")
    if password_file is not None:
        password = _read_secret_file(table.key("password_file"), Path(password_file), base)
    outgoing = OutgoingConfig(
        relay_host=table.get("relay_host", str, "127.0.0.1", "a host name"),
        relay_port=table.convert("relay_port", 25, "a port number", _positive),
        from_address=table.convert("from_address", mailboxes[0].address, "an email address", _parse_address),
        starttls=table.get("starttls", bool, False, "true or false"),
        username=table.optional("username", str, "the relay user name"),
        password=password,
        max_age_hours=table.convert("max_age_hours", 48.0, "a positive number of hours", _positive_number),
        max_automatic_per_minute=table.convert(
            "max_automatic_per_minute", 120, "a positive integer", _positive
        ),
        bounce_block_days=table.convert("bounce_block_days", 60, "a positive number of days", _positive),
        separate_process=table.get("separate_process", bool, True, "true or false"),
    )
    table.finish()
    return outgoing


def _read_notify(table: _Table, base: Path) -> NotifyConfig:
    templates = table.optional("templates_dir", str, "a directory of template overrides")
    templates_dir = base / templates if templates is not None else None
    if templates_dir is not None and not templates_dir.is_dir():
        raise ConfigError(table.key("templates_dir"), "an existing directory", str(templates_dir))
    notify = NotifyConfig(
        templates_dir=templates_dir,
        default_language=table.convert("default_language", "en", '"en", "fi" or "lt"', _parse_language),
    )
    table.finish()
    return notify


def _parse_language(value: Any) -> str | None:
    return value if value in ("en", "fi", "lt") else None


def _read_security(table: _Table, storage: StorageConfig, base: Path) -> SecurityConfig:
    secret = table.optional("secret_file", str, "a file path for the signing secret")
    authserv_id = table.optional("trusted_authserv_id", str, "the authserv-id of your MTA (e.g. mx.example.com)")
    table.finish()
    return SecurityConfig(
        secret_file=base / secret if secret else storage.data_dir / "secret.key",
        trusted_authserv_id=authserv_id.strip() if authserv_id else None,
    )


def _parse_level(value: Any) -> str | None:
    return value if value in ("debug", "info", "warning", "error") else None


def _parse_log_format(value: Any) -> str | None:
    return value if value in ("auto", "json", "console") else None


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the configuration file; None gives the embedded default.

    Relative paths in the file are relative to the file's directory; the embedded default keeps
    its data in `./mailgate-data`.
    """
    if path is None:
        return build_config({}, Path.cwd())
    data, base = read_toml_file(path)
    return build_config(data, base)
