"""The `mailgate` command line: argparse commands, plain or JSON output, sysexits codes (tier 4).

Heavy modules (SQLAlchemy, aiosmtpd) are imported inside the commands that need them, and the
parser defines only the arguments of the command being run, so `mailgate deliver`, which an MTA
runs once per message, stays fast: it imports neither config.py nor anything of the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mailgate import __version__
from mailgate.errors import ConfigError, MailgateError

if TYPE_CHECKING:
    from mailgate.config import Config
    from mailgate.store.transaction import Store

EX_USAGE, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 64, 70, 75, 78

_STATUSES = ["new", "open", "answered", "pending", "resolved", "closed"]


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; given `command`, only that command and its arguments are defined.

    Defining every command's arguments takes milliseconds that an MTA, running `deliver` once
    per message, should not pay. main() passes the command when nothing but --config comes
    before it; help and anything unusual get the full parser, which lists every command.
    """
    parser = argparse.ArgumentParser(prog="mailgate", description="Email-to-ticket gateway.")
    parser.add_argument("--version", action="version", version=f"mailgate {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML configuration file (default: $MAILGATE_CONFIG, "
        "else the embedded default: SQLite in ./mailgate-data, SMTP on 127.0.0.1:2525)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments) in _COMMAND_LINE.items():
        if command is None or command == name:
            add_arguments(commands.add_parser(name, help=help_text))
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command of `argv` when only `--config PATH` or `--config=PATH` come before it, else None."""
    index = 0
    while index < len(argv) and argv[index].startswith("--config"):
        if argv[index] == "--config":
            index += 2
        elif argv[index].startswith("--config="):
            index += 1
        else:
            return None
    if index < len(argv) and argv[index] in _COMMAND_LINE:
        return argv[index]
    return None


def _no_arguments(_command: argparse.ArgumentParser) -> None:
    pass


def _deliver_arguments(deliver: argparse.ArgumentParser) -> None:
    deliver.add_argument("--recipient", metavar="ADDR", help="the envelope recipient (a support address)")
    deliver.add_argument("--sender", metavar="ADDR", default="", help="the envelope sender")


def _check_config_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument(
        "--connect", action="store_true", help="also log in to each [[imap]] account and check its folders"
    )


def _db_arguments(db: argparse.ArgumentParser) -> None:
    db.add_subparsers(dest="db_command", required=True, metavar="ACTION").add_parser(
        "upgrade", help="create or upgrade the schema (idempotent)"
    )


def _tickets_arguments(tickets: argparse.ArgumentParser) -> None:
    tickets_actions = tickets.add_subparsers(dest="tickets_command", required=True, metavar="ACTION")
    listing = tickets_actions.add_parser("list", help="list tickets")
    listing.add_argument("--status", choices=_STATUSES)
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument(
        "--sort", choices=["number", "due", "updated"], default="number",
        help="due: SLA order, the ticket closest to (or furthest past) its target first",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    show = tickets_actions.add_parser("show", help="show one ticket: conversation, attachments, events")
    show.add_argument("number", type=int)
    show.add_argument("--json", action="store_true")
    setter = tickets_actions.add_parser("set", help="change a ticket as an administrator (the customer is told)")
    setter.add_argument("number", type=int)
    setter.add_argument("--status", choices=_STATUSES)
    setter.add_argument("--priority", choices=["low", "medium", "high", "urgent"])
    setter.add_argument("--assign", metavar="EMAIL", help='an agent\'s address, or "none" to unassign')


def _rules_arguments(rules: argparse.ArgumentParser) -> None:
    rules_actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    rules_test = rules_actions.add_parser("test", help="show what the rules would do with one message")
    rules_test.add_argument("file", metavar="FILE.eml")
    rules_test.add_argument("--queue", help="the queue it arrives in (default: from its To/Cc, else the first)")


def _outbox_arguments(outgoing: argparse.ArgumentParser) -> None:
    outgoing_actions = outgoing.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    outgoing_list = outgoing_actions.add_parser("list", help="list outgoing mail, newest first")
    outgoing_list.add_argument("--failed", action="store_true", help="only failed or bounced mail")
    outgoing_list.add_argument("--limit", type=int, default=100)
    outgoing_list.add_argument("--json", action="store_true")
    outgoing_retry = outgoing_actions.add_parser("retry", help="send a failed or bounced mail again")
    outgoing_retry.add_argument("id", type=int)


def _inbound_arguments(queue: argparse.ArgumentParser) -> None:
    queue_actions = queue.add_subparsers(dest="inbound_command", required=True, metavar="ACTION")
    inbound_list = queue_actions.add_parser("list", help="list queued and processed messages")
    inbound_list.add_argument("--failed", action="store_true", help="only messages that failed")
    inbound_list.add_argument("--limit", type=int, default=100)
    inbound_list.add_argument("--json", action="store_true")
    retry = queue_actions.add_parser("retry", help="queue a failed message again")
    retry.add_argument("id", type=int)


def _report_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument(
        "--since", default="30d", help='tickets created since: a period ("30d", "12h", "2w") or a date (2026-01-31)'
    )
    report.add_argument("--queue", help="only tickets in this queue")
    report.add_argument("--format", choices=["table", "json", "csv", "html"], default="table")
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")


def _export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument(
        "--since", metavar="DATE", help="only tickets updated since DATE (2026-01-31, an ISO time, or a period: 30d)"
    )


# Every command in `mailgate --help` order: its help line and the function defining its arguments.
_COMMAND_LINE: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("run the daemon", _no_arguments),
    "deliver": ("queue one message from standard input (MTA pipe)", _deliver_arguments),
    "check-config": ("validate the configuration and exit", _check_config_arguments),
    "db": ("database maintenance", _db_arguments),
    "tickets": ("list and show tickets", _tickets_arguments),
    "rules": ("try the rules", _rules_arguments),
    "outbox": ("mail waiting to be sent, sent, or failed", _outbox_arguments),
    "inbound": ("the inbound queue", _inbound_arguments),
    "report": ("how the help desk is doing: volume, response times, SLA, backlog", _report_arguments),
    "export": ("tickets with their messages and events as JSON lines", _export_arguments),
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = _parser(_named_command(arguments)).parse_args(arguments)
    path = args.config or os.environ.get("MAILGATE_CONFIG") or None
    if args.command == "deliver":
        return _deliver(path, args)
    from mailgate.config import load_config

    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"mailgate: configuration error: {error}", file=sys.stderr)
        return EX_CONFIG
    command = _COMMANDS[args.command]
    try:
        return command(config, args)
    except MailgateError as error:
        print(f"mailgate: {error}", file=sys.stderr)
        return EX_SOFTWARE


def _deliver(path: str | None, args: argparse.Namespace) -> int:
    """`deliver` reads only the configuration it uses (see ingest/pipe.py).

    A configuration or database failure is 75: the MTA keeps the message and retries, so none
    is lost.
    """
    from mailgate.ingest.pipe import deliver, read_delivery_config

    try:
        config = read_delivery_config(path)
    except ConfigError as error:
        print(f"mailgate: configuration error: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    try:
        raw = sys.stdin.buffer.read(config.max_message_bytes + 1)
        result = deliver(config, raw, recipient=args.recipient, sender=args.sender)
    except MailgateError as error:
        print(f"mailgate: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"mailgate deliver: {result.message}", file=sys.stderr if result.exit_code else sys.stdout)
    return result.exit_code


def _cmd_run(config: Config, args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from mailgate.app import AlreadyRunning, App
    from mailgate.logs import configure_logging

    configure_logging(config.logging.level, config.logging.format)
    # The same file main() loaded: SIGHUP re-reads it.
    path = args.config or os.environ.get("MAILGATE_CONFIG") or None
    try:
        asyncio.run(App(config, config_path=Path(path) if path else None).run())
    except AlreadyRunning as error:
        print(f"mailgate: cannot start: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    return 0


def _cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    mailboxes = ", ".join(f"{m.address} -> {m.queue}" for m in config.mailboxes)
    print(
        f"configuration ok: SMTP {'LMTP ' if config.smtp.lmtp else ''}on {config.smtp.host}:{config.smtp.port}, "
        f"mailboxes {mailboxes}, database {_safe_url(config.storage.database_url)}"
    )
    return _check_imap_accounts(config) if args.connect else 0


def _check_imap_accounts(config: Config) -> int:
    """Log in to every IMAP account: one line each, exit 1 if any is not ok. No secret is printed."""
    from mailgate.ingest.imap import probe_account

    if not config.imap:
        print("no [[imap]] accounts to connect to")
        return 0
    failures = 0
    for index, account in enumerate(config.imap):
        result = probe_account(account)
        print(f"imap[{index}] {account.key}: {result}")
        failures += result != "ok"
    return 1 if failures else 0


def _safe_url(url: str) -> str:
    """The database URL without a password, for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
    return url


def _open_store(config: Config) -> Store:
    from mailgate.parts import build_store
    from mailgate.store import schema

    store = build_store(config)
    if not schema.is_current(store.engine):
        raise MailgateError("the database schema is missing or old; run `mailgate db upgrade` first")
    return store


def _cmd_db(config: Config, _args: argparse.Namespace) -> int:
    from mailgate.parts import build_store
    from mailgate.store import schema

    config.storage.data_dir.mkdir(parents=True, exist_ok=True)
    store = build_store(config)
    schema.upgrade(store.engine)
    print(f"database schema is current ({_safe_url(config.storage.database_url)})")
    return 0


def _cmd_tickets(config: Config, args: argparse.Namespace) -> int:
    from mailgate.store import views

    store = _open_store(config)
    if args.tickets_command == "set":
        return _set_ticket(config, store, args)
    if args.tickets_command == "list":
        rows = store.run(views.list_tickets, status=args.status, limit=args.limit, sort=args.sort)
        if args.json:
            print(json.dumps([row.as_json() for row in rows], ensure_ascii=False, indent=2))
        else:
            _print_ticket_table(rows)
        return 0
    detail = store.run(views.show_ticket, args.number)
    if detail is None:
        print(f"mailgate: no ticket #{args.number}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(detail.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_ticket(detail)
    return 0


def _set_ticket(config: Config, store: Store, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from mailgate.domain.ticket import Priority, TicketStatus
    from mailgate.parts import build_actions
    from mailgate.signing_key import load_or_create_secret

    if not (args.status or args.priority or args.assign):
        print("mailgate: tickets set needs --status, --priority or --assign", file=sys.stderr)
        return EX_USAGE
    assignee = None if args.assign in (None, "none") else args.assign.lower()
    if assignee is not None and assignee not in config.agent_addresses:
        print(f"mailgate: {assignee} is not an agent in the configuration ([[agents]] email)", file=sys.stderr)
        return EX_USAGE
    actions = build_actions(config, load_or_create_secret(config.security.secret_file))
    now, actor = datetime.now(UTC), "admin"

    def apply(session: Any) -> list[str]:
        ticket_id = actions.ticket_id(session, args.number)
        changed = []
        if args.status and actions.change_status(session, ticket_id, TicketStatus(args.status), actor=actor, now=now):
            changed.append(f"status {args.status}")
        if args.priority and actions.change_priority(
            session, ticket_id, Priority(args.priority), actor=actor, now=now
        ):
            changed.append(f"priority {args.priority}")
        if args.assign and actions.assign(session, ticket_id, assignee, actor=actor, now=now):
            changed.append(f"assignee {assignee or 'none'}")
        return changed

    changed = store.run(apply)
    print(f"ticket #{args.number}: " + (", ".join(changed) if changed else "nothing changed"))
    return 0


def _cmd_rules(config: Config, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from mailgate.rules_report import explain_rules

    try:
        raw = Path(args.file).read_bytes()
    except OSError as error:
        print(f"mailgate: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return EX_USAGE
    try:
        print(explain_rules(config, raw, queue=args.queue, now=datetime.now(UTC)))
    except MailgateError as error:
        print(f"mailgate: {args.file}: {error}", file=sys.stderr)
        return 65
    return 0


def _cmd_outbox(config: Config, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from mailgate.store import outbox

    store = _open_store(config)
    if args.outbox_command == "retry":
        previous = store.run(outbox.retry, args.id, datetime.now(UTC))
        if previous is None:
            print(f"mailgate: no outbox mail {args.id}", file=sys.stderr)
            return 1
        if previous not in (outbox.FAILED, outbox.BOUNCED):
            print(f"mailgate: outbox mail {args.id} is {previous}; nothing to retry", file=sys.stderr)
            return 1
        print(f"outbox mail {args.id} queued again (was {previous}); the running daemon sends it")
        return 0
    rows = store.run(outbox.list_outbox, failed_only=args.failed, limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **row.__dict__,
                        "created_at": row.created_at.isoformat(),
                        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
                    }
                    for row in rows
                ],
                indent=2,
            )
        )
        return 0
    for row in rows:
        print(
            f"{row.id:>7} {row.created_at:%Y-%m-%d %H:%M:%S} {row.state:<8} {row.kind:<20} {row.recipient:<32} "
            f"attempts {row.attempts}{'  ' + row.last_error if row.last_error else ''}"
        )
    print(f"{len(rows)} mail(s)")
    return 0


def _print_ticket_table(rows: Sequence[Any]) -> None:
    print(f"{'#':>6}  {'status':<9} {'priority':<8} {'queue':<12} {'requester':<30} subject")
    for row in rows:
        print(
            f"{row.number:>6}  {row.status:<9} {row.priority:<8} {row.queue[:12]:<12} "
            f"{(row.requester or '-')[:30]:<30} {row.subject[:60]}"
        )
    print(f"{len(rows)} ticket(s)")


def _print_ticket(detail: Any) -> None:
    summary = detail.summary
    print(f"Ticket #{summary.number}: {summary.subject}")
    print(
        f"  status {summary.status}, priority {summary.priority}, queue {summary.queue}, "
        f"requester {summary.requester or '-'}, assignee {summary.assignee or '-'}"
    )
    print(f"  tags: {', '.join(summary.tags) or '-'}; participants: {', '.join(detail.participants) or '-'}")
    for message in detail.messages:
        print(
            f"\n--- {message.direction} {message.created_at:%Y-%m-%d %H:%M} from {message.author or '(unknown)'}"
            f"{' [sender not trusted: ' + message.sender_problem + ']' if message.sender_problem else ''}"
        )
        print(f"    Subject: {message.subject}")
        print("    " + "\n    ".join(message.text_body.strip().splitlines()[:200]))
        for attachment in message.attachments:
            print(
                f"    [attachment] {attachment['filename']} ({attachment['content_type']}, {attachment['size']} bytes)"
            )
    print("\nSystem log:")
    for event in detail.events:
        data = ", ".join(f"{key}={value}" for key, value in event.data.items())
        print(f"  {event.created_at:%Y-%m-%d %H:%M:%S} {event.kind} by {event.actor}: {data}")


def _cmd_inbound(config: Config, args: argparse.Namespace) -> int:
    from mailgate.store import inbound

    store = _open_store(config)
    if args.inbound_command == "retry":
        previous = store.run(inbound.retry, args.id)
        if previous is None:
            print(f"mailgate: no inbound message {args.id}", file=sys.stderr)
            return 1
        if previous not in (inbound.FAILED, inbound.IGNORED):
            print(f"mailgate: inbound message {args.id} is {previous}, not failed; nothing to retry", file=sys.stderr)
            return 1
        print(f"inbound message {args.id} queued again (was {previous}); the running daemon picks it up")
        return 0
    rows = store.run(inbound.list_inbound, failed_only=args.failed, limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {**row.__dict__, "received_at": row.received_at.isoformat(), "rcpt_tos": list(row.rcpt_tos)}
                    for row in rows
                ],
                indent=2,
            )
        )
        return 0
    for row in rows:
        ticket = f"#{row.ticket_number}" if row.ticket_number else "-"
        print(
            f"{row.id:>7} {row.received_at:%Y-%m-%d %H:%M:%S} {row.source:<5} {row.state:<10} {ticket:>7} "
            f"{row.size:>9}B {row.mail_from or '<>'}{'  ' + row.last_error if row.last_error else ''}"
        )
    print(f"{len(rows)} message(s)")
    return 0


def _cmd_report(config: Config, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from mailgate.report_render import render
    from mailgate.reporting import build_report, parse_since
    from mailgate.store import reports

    now = datetime.now(UTC)
    try:
        since = parse_since(args.since, now)
    except ValueError as error:
        print(f"mailgate: --since: {error}", file=sys.stderr)
        return EX_USAGE
    store = _open_store(config)
    histories = store.run(reports.ticket_histories, since=since, queue=args.queue)
    backlog = store.run(reports.open_tickets, queue=args.queue)
    text = render(build_report(histories, backlog, now=now, since=since, queue=args.queue), args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"report written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_export(config: Config, args: argparse.Namespace) -> int:
    """JSON lines, one ticket each, a page of tickets at a time: memory stays flat whatever the size."""
    from datetime import UTC, datetime

    from mailgate.reporting import parse_since
    from mailgate.store import export

    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as error:
        print(f"mailgate: --since: {error}", file=sys.stderr)
        return EX_USAGE
    store = _open_store(config)
    cursor: int | None = 0
    while cursor is not None:
        records, cursor = store.run(export.ticket_page, since=since, after_id=cursor, limit=200)
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


# The commands that run on the whole, validated configuration (all but `deliver`).
_COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "run": _cmd_run,
    "check-config": _cmd_check_config,
    "db": _cmd_db,
    "tickets": _cmd_tickets,
    "inbound": _cmd_inbound,
    "outbox": _cmd_outbox,
    "rules": _cmd_rules,
    "report": _cmd_report,
    "export": _cmd_export,
}
