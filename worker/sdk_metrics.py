"""The Temporal SDK's own metrics (``temporal_*``: poll and task latencies, slots, sticky cache, failures) on the
worker's ``/metrics``, next to Tern's.

The SDK core records them into a :class:`temporalio.runtime.MetricBuffer` (``TelemetryConfig(metrics=buffer)``
on the worker's :class:`~temporalio.runtime.Runtime`; the SDK's documented way to hand its metrics to another
system). :class:`SdkMetricsCollector` is a prometheus_client collector that drains the buffer on each scrape
(and every :data:`DRAIN_EVERY_S` between scrapes, so the buffer never fills) and exposes what it accumulated:
counters as Prometheus counters (deltas summed), gauges as gauges (last value), histograms as Prometheus
histograms: the buffer hands over single observations, which are sorted into :data:`HISTOGRAM_BUCKETS_S` (so
``histogram_quantile`` gives schedule-to-start and poll-latency percentiles), with ``_sum`` and ``_count``.
Durations in seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

# Upper bounds (seconds; ``+Inf`` added) of the SDK histograms' buckets. The SDK core's own Prometheus exporter
# uses 1 ms .. 60 s on a 1-2-5 scale for latencies; the tail to 1 h keeps a task-queue backlog's schedule-to-start
# (minutes behind hour-long sandbox or ingestion work) out of the +Inf bucket. Non-duration histograms (e.g.
# ``temporal_sticky_cache_size``-like sizes) fall in the same bounds as plain numbers.
HISTOGRAM_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
BUFFER_SIZE = 100_000  # updates held between drains (the SDK asks for tens of thousands or more)
DRAIN_EVERY_S = 5.0
# SDK metrics that infra/prometheus/alerts.yml uses (tests/test_worker_health.py checks a worker exposes them).
ALERTED_SDK_METRICS = ("temporal_num_pollers",)

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    kind: int
    doc: str
    values: dict[Labels, float] = field(default_factory=dict)  # counter: sum of deltas; gauge: last value
    counts: dict[Labels, int] = field(default_factory=dict)  # histogram: observations
    buckets: dict[Labels, list[int]] = field(default_factory=dict)  # histogram: observations per bucket, not cumulative


class SdkMetricsCollector(Collector):
    """Drains ``buffer`` and exposes its metrics (see module docstring). Thread-safe."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self.buffer = buffer
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def drain(self) -> int:
        """Move the buffer's pending updates into the accumulated state; returns how many there were."""
        with self._lock:
            updates = self.buffer.retrieve_updates()
            for u in updates:
                m = u.metric
                fam = self._families.get(m.name)
                if fam is None:
                    doc = (m.description or m.name) + (f" ({m.unit})" if m.unit else "")
                    fam = self._families[m.name] = _Family(kind=m.kind, doc=doc)
                labels = tuple(sorted((str(k), str(v)) for k, v in u.attributes.items()))
                if fam.kind == BUFFERED_METRIC_KIND_COUNTER:
                    fam.values[labels] = fam.values.get(labels, 0.0) + u.value
                elif fam.kind == BUFFERED_METRIC_KIND_GAUGE:
                    fam.values[labels] = float(u.value)
                else:
                    fam.values[labels] = fam.values.get(labels, 0.0) + u.value
                    fam.counts[labels] = fam.counts.get(labels, 0) + 1
                    per = fam.buckets.setdefault(labels, [0] * (len(HISTOGRAM_BUCKETS_S) + 1))
                    per[bisect.bisect_left(HISTOGRAM_BUCKETS_S, u.value)] += 1  # first bound >= value (le)
            return len(updates)

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, fam in sorted(self._families.items()):
                if fam.kind == BUFFERED_METRIC_KIND_COUNTER:
                    base = name.removesuffix("_total")
                    metric = Metric(base, fam.doc, "counter")
                    for labels, value in fam.values.items():
                        metric.add_sample(base + "_total", dict(labels), value)
                elif fam.kind == BUFFERED_METRIC_KIND_GAUGE:
                    metric = Metric(name, fam.doc, "gauge")
                    for labels, value in fam.values.items():
                        metric.add_sample(name, dict(labels), value)
                else:
                    metric = Metric(name, fam.doc, "histogram")
                    for labels, value in fam.values.items():
                        cumulative = 0
                        for bound, n in zip((*HISTOGRAM_BUCKETS_S, math.inf), fam.buckets[labels], strict=True):
                            cumulative += n
                            le = "+Inf" if bound == math.inf else floatToGoString(bound)
                            metric.add_sample(name + "_bucket", {**dict(labels), "le": le}, cumulative)
                        metric.add_sample(name + "_count", dict(labels), fam.counts[labels])
                        metric.add_sample(name + "_sum", dict(labels), value)
                yield metric

    async def drain_periodically(self, stop: asyncio.Event) -> None:
        """Drain every :data:`DRAIN_EVERY_S` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), DRAIN_EVERY_S)
            except TimeoutError:
                self.drain()


@functools.cache
def metrics_runtime(registry: CollectorRegistry = REGISTRY) -> tuple[Runtime, SdkMetricsCollector]:
    """The process's Temporal runtime whose metrics go to a buffer, and the collector (registered in
    ``registry``) that exposes them; made once per process (the SDK's advice: one runtime a process). Give the
    runtime to :func:`worker.connection.connect`; the worker's client and the worker then record into it."""
    buffer = MetricBuffer(BUFFER_SIZE, duration_format=MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    collector = SdkMetricsCollector(buffer)
    registry.register(collector)
    return runtime, collector
