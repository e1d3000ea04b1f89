"""The metrics registry and its Prometheus text rendering."""

from __future__ import annotations

import pytest
import structlog

from mailgate.metrics import Counter, Histogram, Metrics, install_log_processor, remove_log_processor, render


def test_counter_renders_help_type_and_escaped_labels() -> None:
    """A counter's lines carry HELP and TYPE and escape quotes, backslashes and newlines in label values."""
    counter = Counter("demo_total", "Demo\nhelp", ("who",))
    counter.inc('a"b\\c\nd', amount=2)
    text = render([counter])
    assert text.splitlines() == [
        "# HELP demo_total Demo\\nhelp",
        "# TYPE demo_total counter",
        'demo_total{who="a\\"b\\\\c\\nd"} 2',
    ]


def test_counter_refuses_to_go_down_or_take_the_wrong_labels() -> None:
    """Counters only increase and need exactly their label values."""
    counter = Counter("demo_total", "Demo", ("who",))
    with pytest.raises(ValueError):
        counter.inc("x", amount=-1)
    with pytest.raises(ValueError):
        counter.inc()


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    """Observations land in every bucket at or above them, plus +Inf, _sum and _count."""
    histogram = Histogram("latency_seconds", "Latency", (0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        histogram.observe(value)
    lines = [line for line in render([histogram]).splitlines() if not line.startswith("#")]
    assert lines == [
        'latency_seconds_bucket{le="0.1"} 1',
        'latency_seconds_bucket{le="1"} 2',
        'latency_seconds_bucket{le="+Inf"} 3',
        "latency_seconds_sum 5.55",
        "latency_seconds_count 3",
    ]


def test_metrics_start_with_zero_series_for_every_source() -> None:
    """Each known source has a received/processed/failed series at 0 before any mail."""
    text = render(Metrics().families())
    for source in ("smtp", "lmtp", "pipe", "imap"):
        assert f'mailgate_messages_received_total{{source="{source}"}} 0' in text
    assert 'mailgate_outbox_failures_total{reason="permanent"} 0' in text


def test_imap_failures_are_counted_from_the_pollers_log_events() -> None:
    """The log processor counts imap_reconnecting and imap_login_failed per account, and nothing else."""
    metrics = Metrics()
    install_log_processor(metrics.count_log_event)
    try:
        log = structlog.get_logger("test").bind(account="u@imap.example:993/INBOX")
        log.warning("imap_reconnecting", error="connection refused")
        log.error("imap_login_failed", error="bad password")
        log.info("imap_imported", count=3)
    finally:
        remove_log_processor(metrics.count_log_event)
    assert metrics.imap_errors.value("u@imap.example:993/INBOX") == 2
    structlog.get_logger("test").warning("imap_reconnecting", account="u@imap.example:993/INBOX")
    assert metrics.imap_errors.value("u@imap.example:993/INBOX") == 2
