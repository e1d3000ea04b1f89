"""In-process counters and one histogram, rendered in the Prometheus text exposition format.

The daemon owns one Metrics object; the SMTP handler, the inbound worker and the outbox worker
count into it (the worker from its threads, hence the locks). Queue depths and SLA breaches are
not counted here: they are read from the database at scrape time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

# Parsing and filing one message takes milliseconds; a slow disk or a huge mail, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SOURCES = ("smtp", "lmtp", "pipe", "imap")
OUTBOX_FAILURES = ("permanent", "gave_up", "render", "deferred")
# What the IMAP pollers log when a session fails (ingest/imap.py MailboxPoller._back_off).
IMAP_ERROR_EVENTS = frozenset({"imap_reconnecting", "imap_login_failed"})

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One line of the exposition: a series name, its labels and its value."""

    name: str
    labels: Labels
    value: float


class Family(Protocol):
    """A metric with its HELP and TYPE lines: a Counter, a Histogram or values read at scrape time."""

    @property
    def name(self) -> str: ...

    @property
    def help(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def samples(self) -> list[Sample]: ...


@dataclass(frozen=True)
class StaticFamily:
    """Values computed at scrape time (gauges from the database)."""

    name: str
    help: str
    kind: str
    values: tuple[Sample, ...]

    def samples(self) -> list[Sample]:
        return list(self.values)


class Counter:
    """A monotonic count per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        if len(label_values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {label_values}")
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._values[label_values] = self._values.get(label_values, 0.0) + amount

    def value(self, *label_values: str) -> float:
        with self._lock:
            return self._values.get(label_values, 0.0)

    def samples(self) -> list[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        return [Sample(self.name, tuple(zip(self.label_names, key, strict=True)), value) for key, value in items]


class Histogram:
    """Cumulative buckets of observed seconds, with their sum and count (no labels)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.help = help
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[index] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def samples(self) -> list[Sample]:
        with self._lock:
            counts, total, count = list(self._counts), self._sum, self._count
        lines = [
            Sample(f"{self.name}_bucket", (("le", _number(bound)),), float(n))
            for bound, n in zip(self.buckets, counts, strict=True)
        ]
        lines.append(Sample(f"{self.name}_bucket", (("le", "+Inf"),), float(count)))
        lines.append(Sample(f"{self.name}_sum", (), total))
        lines.append(Sample(f"{self.name}_count", (), float(count)))
        return lines


class Metrics:
    """Everything the daemon counts; each series is named mailgate_* and documented in its HELP line."""

    def __init__(self) -> None:
        self.received = Counter(
            "mailgate_messages_received_total",
            "Messages received, by source (smtp/lmtp when answered 250; pipe/imap when first claimed by the worker)",
            ("source",),
        )
        self.processed = Counter(
            "mailgate_messages_processed_total", "Messages filed into a ticket or ignored, by source", ("source",)
        )
        self.failed = Counter(
            "mailgate_messages_failed_total",
            "Messages kept as failed (limits, broken MIME, bugs), by source",
            ("source",),
        )
        self.latency = Histogram(
            "mailgate_processing_seconds", "Time from claiming a message to its filing commit", LATENCY_BUCKETS
        )
        self.outbox_sent = Counter("mailgate_outbox_sent_total", "Outgoing mails accepted by the relay")
        self.outbox_failures = Counter(
            "mailgate_outbox_failures_total",
            "Outgoing mail failures: permanent (5xx), gave_up (too old), render (template), deferred (4xx, retried)",
            ("reason",),
        )
        self.imap_errors = Counter(
            "mailgate_imap_errors_total", "IMAP sessions that failed (login, network, server), by account", ("account",)
        )
        # Known label values start at 0, so a dashboard sees the series before the first event.
        for source in SOURCES:
            for counter in (self.received, self.processed, self.failed):
                counter.inc(source, amount=0)
        for reason in OUTBOX_FAILURES:
            self.outbox_failures.inc(reason, amount=0)
        self.outbox_sent.inc(amount=0)

    def families(self) -> list[Family]:
        return [
            self.received,
            self.processed,
            self.failed,
            self.latency,
            self.outbox_sent,
            self.outbox_failures,
            self.imap_errors,
        ]

    def count_log_event(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A structlog processor: the IMAP pollers report failures only in their log, so count them there."""
        if event_dict.get("event") in IMAP_ERROR_EVENTS:
            self.imap_errors.inc(str(event_dict.get("account", "unknown")))
        return event_dict


def install_log_processor(processor: Any) -> None:
    """Put `processor` first in structlog's chain (before level names and rendering see the event)."""
    processors = list(structlog.get_config()["processors"])
    if processor not in processors:
        structlog.configure(processors=[processor, *processors])


def remove_log_processor(processor: Any) -> None:
    # Equality, not identity: each `metrics.count_log_event` access is a new bound-method object.
    processors = [p for p in structlog.get_config()["processors"] if p != processor]
    structlog.configure(processors=processors)


def render(families: Iterable[Family]) -> str:
    """The text exposition format 0.0.4: HELP and TYPE, then one line per sample."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines.extend(_sample_line(sample) for sample in family.samples())
    return "\n".join(lines) + "\n"


def _sample_line(sample: Sample) -> str:
    if not sample.labels:
        return f"{sample.name} {_number(sample.value)}"
    labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in sample.labels)
    return f"{sample.name}{{{labels}}} {_number(sample.value)}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
