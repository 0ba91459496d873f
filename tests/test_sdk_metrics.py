"""The SDK's histograms on ``/metrics`` are Prometheus histograms with buckets (issue 26 finding 6: they were
reduced to count and sum, so schedule-to-start percentiles were lost). Observations go through the real SDK core
(a ``Runtime`` whose metrics go to a ``MetricBuffer``) and are checked against bucket counts computed here."""

from __future__ import annotations

import bisect
from datetime import timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from worker.sdk_metrics import HISTOGRAM_BUCKETS_S, metrics_runtime

OBSERVED_S = [0.0004, 0.003, 0.003, 0.05, 0.7, 4.0, 45.0, 120.0, 5000.0]


def test_sdk_histograms_are_exposed_with_cumulative_buckets() -> None:
    registry = CollectorRegistry()
    runtime, _ = metrics_runtime(registry)
    hist = runtime.metric_meter.create_histogram_timedelta("temporal_test_schedule_to_start_latency", "test", "s")
    for s in OBSERVED_S:
        hist.with_additional_attributes({"task_queue": "q1"}).record(timedelta(seconds=s))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    fam = families["temporal_test_schedule_to_start_latency"]
    assert fam.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name.endswith("_bucket")}
    # independent: for each bound, how many observations are at or below it
    for bound in HISTOGRAM_BUCKETS_S:
        key = next(k for k in buckets if k != "+Inf" and float(k) == bound)
        assert buckets[key] == sum(1 for s in OBSERVED_S if s <= bound), bound
    assert buckets["+Inf"] == len(OBSERVED_S)
    count = next(s.value for s in fam.samples if s.name.endswith("_count"))
    total = next(s.value for s in fam.samples if s.name.endswith("_sum"))
    assert count == len(OBSERVED_S)
    assert abs(total - sum(OBSERVED_S)) < 1e-6 * sum(OBSERVED_S)
    assert all(s.labels.get("task_queue") == "q1" for s in fam.samples)
    # the bounds are sorted, so bisect (what the collector uses) agrees with the definition
    assert list(HISTOGRAM_BUCKETS_S) == sorted(HISTOGRAM_BUCKETS_S)
    assert bisect.bisect_left(HISTOGRAM_BUCKETS_S, 0.001) == 0  # le is inclusive: 1 ms falls in le="0.001"
