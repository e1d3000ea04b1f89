"""`python -m bench --smoke` runs every path of the benchmark in seconds, so the benchmark cannot rot.

Only the shape of the results and that the figures are positive are checked, never speeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _positive(document: dict[str, Any], *path: str) -> float:
    value: Any = document
    for key in path:
        value = value[key]
    assert isinstance(value, int | float) and value > 0, f"{'.'.join(path)} = {value!r}"
    return float(value)


@pytest.mark.slow
def test_bench_smoke_writes_a_complete_json_with_positive_figures(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "performance goals" in completed.stdout
    result = json.loads(output.read_text())
    assert {"meta", "corpus", "runs", "idle", "store_scale", "soak", "multi_instance", "goals"} <= result.keys()
    assert result["corpus"]["mails"] == 20 and len(result["corpus"]["sha256"]) == 64

    (run,) = result["runs"]
    assert run["backend"] == "sqlite" and run["connections"] == 1
    assert run["acceptance"]["accepted"] == 20 and not run["acceptance"]["errors"]
    for key in ("p50", "p95", "p99"):
        _positive(run, "latency_ms", "dot_to_250", key)
    e2e = run["end_to_end"]
    assert e2e["complete"] and e2e["tickets_created"] == e2e["tickets_expected"] == result["corpus"]["requests"]
    assert e2e["tickets_without_acknowledgement"] == 0 and e2e["sink_received"] > 0
    for path in (("acceptance", "per_second"), ("end_to_end", "per_second"), ("cpu", "seconds"),
                 ("cpu", "ms_per_message"), ("rss_mb", "largest_process_peak_mb"), ("rss_mb", "steady_after_total")):
        _positive(run, *path)

    idle = result["idle"]["sqlite"]
    _positive(idle, "ticket", "dot_to_ticket_ms", "p50")
    _positive(idle, "deliver", "wall_ms", "p50")
    assert idle["ticket"]["not_filed"] == 0 and not idle["deliver"]["failures"]

    (scaled,) = result["store_scale"]["runs"]
    assert scaled["store_size"] > 0 and scaled["end_to_end"]["complete"]
    _positive(scaled, "prefill_seconds")

    soak = result["soak"]
    assert soak["all_filed"] and soak["accepted"] > 0
    _positive(soak, "rss_mb", "total_peak_mb")
    assert {goal["goal"] for goal in result["goals"]} >= {"1", "2a", "2b", "3a", "3b", "4", "5", "6"}
    _check_multi_instance(result["multi_instance"])


def _check_multi_instance(section: dict[str, Any]) -> None:
    """Two daemons on one PostgreSQL database, or the reason the server did not answer."""
    if section["skipped"]:
        assert "PostgreSQL" in section["skipped"]
        return
    assert not section["errors"], section["errors"]
    (run,) = section["runs"]
    assert run["instances"] == 2 and run["mails"] == section["corpus"]["mails"] == 40
    assert run["acceptance"]["accepted"] == 40 and run["end_to_end"]["complete"]
    checks = run["exactly_once"]
    assert checks["exactly_once"] and checks["duplicates"] == 0, checks
    assert checks["inbound_processed"] == 40 and checks["messages_stored"] == 40
    assert checks["outbox_rows"] > 0 and checks["outbox_states"] == {"sent": checks["outbox_rows"]}
    assert checks["sink_duplicates"] == 0 and checks["sink_missing"] == 0
    assert checks["instances_that_processed"] == 2
    assert [row["instance"] for row in run["per_instance"]] == [1, 2]
    for row in run["per_instance"]:
        assert row["accepted"] > 0 and row["inbound_processed"] > 0, row
    for path in (("acceptance", "per_second"), ("end_to_end", "per_second"), ("cpu", "seconds")):
        _positive(run, *path)
