"""Summary of a py-spy raw (collapsed stacks) profile of the daemon: where a message's time goes.

    python -m bench.profile FILE [FILE ...]

Each sample is attributed to a component (the outermost mailgate frame: SMTP ingest, inbound
worker, outbox worker, scheduler) and to an activity (the innermost library frame: SQLAlchemy
and the database driver, MIME parsing, templates, SMTP client, logging, ...). py-spy sees
Python frames only, so time in C (sqlite3, zlib, the kernel) counts for the Python frame that
called it. Idle threads are not sampled (py-spy's default), so percentages are of busy time.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Markers are matched against "function (short/path.py)"; the first component listed wins a frame.
COMPONENTS = (
    ("SMTP ingest", ("(mailgate/ingest/smtp.py)", "(aiosmtpd/", "enqueue (mailgate/store/inbound.py)",
                     "(mailgate/store/spool.py)")),
    ("inbound worker", ("(mailgate/worker.py)", "(mailgate/store/inbound.py)", "(mailgate/filing.py)")),
    ("outbox worker", ("(mailgate/notify/outbox_worker.py)", "(mailgate/store/outbox.py)",
                       "(mailgate/notify/relay.py)")),
    ("scheduler", ("(mailgate/scheduler.py)", "(mailgate/store/timers.py)")),
    ("IMAP", ("(mailgate/ingest/imap.py)",)),
    ("start-up and migrations", ("(alembic/",)),
    ("event loop (select, wake-ups)", ("(asyncio/", "(selectors.py)")),
)
ACTIVITIES = (
    ("database (SQLAlchemy + driver)", ("(sqlalchemy/", "(psycopg/", "(sqlite3/", "(mailgate/store/")),
    ("MIME parsing", ("(mailparser/", "(email/", "(mailgate/mail/parse.py)", "(mailgate/mail/body.py)",
                      "(mailgate/mail/headers.py)", "(mailgate/mail/attachments.py)", "(mailgate/mail/limits.py)")),
    ("HTML sanitising", ("(nh3",)),
    ("templates (jinja2)", ("(jinja2/", "(mailgate/notify/render.py)")),
    ("composing outgoing mail", ("(mailgate/mail/compose.py)",)),
    ("outgoing SMTP (smtplib)", ("(smtplib.py)",)),
    ("SMTP server protocol (aiosmtpd)", ("(aiosmtpd/",)),
    ("logging (structlog)", ("(structlog/", "(logging/")),
    ("threads and event loop", ("(asyncio/", "(selectors.py)", "(concurrent/", "(threading.py)")),
    ("rules and triage", ("(mailgate/rules/", "(mailgate/triage.py)")),
    ("threading decision", ("(mailgate/threading/",)),
)


# Frames inside this checkout are shown relative to it.
_REPOSITORY = str(Path(__file__).resolve().parents[1]) + "/"

def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    short = re.split(r"site-packages/|/lib/python3\.\d+/|" + re.escape(_REPOSITORY), path)[-1]
    return f"{match.group('func')} ({short})"


def _classify(names: list[str], table: tuple[tuple[str, tuple[str, ...]], ...], outermost: bool) -> str:
    for name in names if outermost else reversed(names):
        for label, markers in table:
            if any(marker in name for marker in markers):
                return label
    return "other"


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        stacks.append((frames, int(count)))
    return stacks


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    stacks = parse(path)
    total = sum(count for _frames, count in stacks) or 1
    components: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        names = [_name(frame) for frame in frames]
        components[_classify(names, COMPONENTS, outermost=True)] += count
        activities[_classify(names, ACTIVITIES, outermost=False)] += count
        if names:
            leaves[names[-1]] += count
        for name in {name for name in names if "(mailgate/" in name}:
            inclusive[name] += count

    def share(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, round(100 * count / total, 1)) for name, count in counter.most_common(limit)]

    return {
        "file": str(path),
        "samples": total,
        "components_pct": dict(share(components, 10)),
        "activities_pct": dict(share(activities, 15)),
        "top_self_pct": share(leaves, top),
        "top_mailgate_inclusive_pct": share(inclusive, top + 10),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['file']}: {summary['samples']} samples (busy time)"]
    for title, key in (("by component", "components_pct"), ("by activity", "activities_pct")):
        lines.append(f"  {title}: " + ", ".join(f"{name} {pct}%" for name, pct in summary[key].items()))
    lines.append("  hottest frames (self):")
    lines += [f"    {pct:5.1f}%  {name}" for name, pct in summary["top_self_pct"]]
    lines.append("  mailgate functions (inclusive):")
    lines += [f"    {pct:5.1f}%  {name}" for name, pct in summary["top_mailgate_inclusive_pct"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summaries = [summarise(path) for path in args.files]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return
    for summary in summaries:
        print(format_summary(summary))


if __name__ == "__main__":
    main()
