"""Small statistics: percentiles, latency summaries in milliseconds, rates, RSS series summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(values_seconds: Sequence[float]) -> dict[str, float]:
    values = [value * 1000 for value in values_seconds]
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 3),
        "p95": round(percentile(values, 0.95), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values, default=0.0), 3),
        "mean": round(statistics.fmean(values), 3) if values else 0.0,
    }


def per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def rss_summary(series: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    """Peak and median of (time, total MB, largest process MB) samples."""
    if not series:
        return {"samples": 0, "total_peak_mb": 0.0, "total_median_mb": 0.0, "largest_process_peak_mb": 0.0}
    return {
        "samples": len(series),
        "total_peak_mb": round(max(row[1] for row in series), 1),
        "total_median_mb": round(statistics.median(row[1] for row in series), 1),
        "largest_process_peak_mb": round(max(row[2] for row in series), 1),
    }


def slope_mb_per_10min(series: Sequence[tuple[float, float, float]]) -> float:
    """Least-squares slope of total RSS over time, in MB per 10 minutes."""
    if len(series) < 2:
        return 0.0
    times = [row[0] for row in series]
    values = [row[1] for row in series]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    denominator = sum((t - mean_t) ** 2 for t in times)
    if denominator == 0:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / denominator
    return round(slope * 600, 2)
