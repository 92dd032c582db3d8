"""Latency summaries shared by the benchmark scripts."""

from __future__ import annotations

import math
from typing import Any


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(
    latencies: list[float], requests: int, seconds: float, errors: int = 0
) -> dict[str, Any]:
    """p50/p90/p99/max in milliseconds and requests per second."""
    values = sorted(latencies)
    return {
        "n": len(values),
        "errors": errors,
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3) if values else 0.0,
        "req_per_s": round(requests / seconds, 1) if seconds > 0 else 0.0,
    }
