"""Prometheus metrics: counted in plain dicts on the hot path, exposed by prometheus-client.

prometheus-client's own ``Counter.labels(...).inc()`` takes a lock and a label lookup per call;
the gateway instead keeps its counts in dicts keyed by label tuples (one event loop thread, no
lock needed) and a custom collector turns them into metric families at scrape time, in a
registry of its own (no process-global state).

Named like the anchors' exports (LiteLLM's ``litellm_input_tokens``/``litellm_spend_metric``/
``..._time_to_first_token_metric``, Envoy AI Gateway's ``gen_ai_client_token_usage`` and
``gen_ai_server_time_to_first_token``) in Prometheus' conventions: counters end in ``_total``,
durations are in seconds, money in USD; no organisation, key or address is ever a label (their
number is unbounded), only provider, model, endpoint, country and outcome.

Metrics:
  regionblock_gateway_requests_total{country,provider,decision,status}
  regionblock_gateway_request_duration_seconds{provider,decision}        histogram (total time)
  regionblock_gateway_upstream_duration_seconds{provider}                histogram
  regionblock_gateway_prompt_tokens_total{provider,model,endpoint}       tokens billed as input
  regionblock_gateway_completion_tokens_total{provider,model,endpoint}   tokens billed as output
  regionblock_gateway_spend_usd_total{provider,model,endpoint}           revenue at list price
  regionblock_gateway_time_to_first_token_seconds{provider,model}        histogram (streams)
  regionblock_gateway_ledger_lag_seconds / _ledger_backlog (gauges), _ledger_rows_total (counter)
  regionblock_gateway_upstream_up{provider} (1 closed, 0.5 half-open, 0 open circuit)
  regionblock_gateway_upstream_failures_total{provider,error}
  regionblock_gateway_inflight, regionblock_gateway_rejected_total{reason}
  process_* and python_* (prometheus-client's process, platform and GC collectors)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)
PREFIX = "regionblock_gateway_"


class Histogram:
    """Cumulative-at-scrape bucket counts for one label set."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Metered(Protocol):
    """What :meth:`Metrics.record` reads of a request's ledger record."""

    country: str
    provider: str
    model: str
    endpoint: str
    decision: str
    status: int
    tokens_in: int
    tokens_out: int
    revenue_usd: float
    ttft_ms: float | None


class Metrics:
    """The gateway's counters; ``gauges`` and ``counters`` callbacks are read at scrape time."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int], int] = {}
        self.tokens: dict[tuple[str, str, str], list[float]] = {}  # [in, out, usd]
        self.ttft: dict[tuple[str, str], Histogram] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}
        self.upstream: dict[str, Histogram] = {}
        self.upstream_failures: dict[tuple[str, str], int] = {}
        self.rejected: dict[str, int] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.labelled_gauges: dict[str, tuple[str, str, Callable[[], dict[str, float]]]] = {}
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        # The default exports every Prometheus client has (process_*, python_info, python_gc_*),
        # in this registry rather than the process-global one.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def record(self, m: Metered, seconds: float) -> None:
        """One finished request: its outcome, and what it was billed (if a model served it)."""
        self.request(m.country, m.provider, m.decision, m.status, seconds)
        if not m.provider or not (m.tokens_in or m.tokens_out):
            return
        key = (m.provider, m.model, m.endpoint)
        sums = self.tokens.get(key)
        if sums is None:
            sums = self.tokens[key] = [0.0, 0.0, 0.0]
        sums[0] += m.tokens_in
        sums[1] += m.tokens_out
        sums[2] += m.revenue_usd
        if m.ttft_ms is not None:
            hkey = (m.provider, m.model)
            hist = self.ttft.get(hkey)
            if hist is None:
                hist = self.ttft[hkey] = Histogram()
            hist.observe(m.ttft_ms / 1000)

    def request(self, country: str, provider: str, decision: str, status: int, seconds: float) -> None:
        key = (country, provider, decision, status)  # the status label is made at scrape time
        self.requests[key] = self.requests.get(key, 0) + 1
        hkey = (provider, decision)
        hist = self.durations.get(hkey)
        if hist is None:
            hist = self.durations[hkey] = Histogram()
        hist.counts[bisect_left(BUCKETS, seconds)] += 1  # Histogram.observe, inline (per request)
        hist.sum += seconds

    def upstream_time(self, provider: str, seconds: float) -> None:
        hist = self.upstream.get(provider)
        if hist is None:
            hist = self.upstream[provider] = Histogram()
        hist.counts[bisect_left(BUCKETS, seconds)] += 1  # Histogram.observe, inline (per request)
        hist.sum += seconds

    def upstream_failure(self, provider: str, error: str) -> None:
        key = (provider, error)
        self.upstream_failures[key] = self.upstream_failures.get(key, 0) + 1

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        requests = CounterMetricFamily(PREFIX + "requests", "Chat completion requests",
                                       labels=["country", "provider", "decision", "status"])
        for (country, provider, decision, status), n in sorted(m.requests.items()):
            requests.add_metric([country, provider, decision, str(status)], n)
        yield requests
        yield _histograms(PREFIX + "request_duration_seconds", "Time from arrival to the response's end",
                          ["provider", "decision"], {k: h for k, h in m.durations.items()})
        yield _histograms(PREFIX + "upstream_duration_seconds", "Time spent waiting on upstreams",
                          ["provider"], {(k,): h for k, h in m.upstream.items()})
        failures = CounterMetricFamily(PREFIX + "upstream_failures", "Failed upstream attempts",
                                       labels=["provider", "error"])
        for fkey, n in sorted(m.upstream_failures.items()):
            failures.add_metric(list(fkey), n)
        yield failures
        rejected = CounterMetricFamily(PREFIX + "rejected", "Requests refused by hardening limits",
                                       labels=["reason"])
        for reason, n in sorted(m.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield from _usage(m)
        for name, (doc, read) in m.counters.items():
            yield CounterMetricFamily(PREFIX + name, doc, value=read())
        for name, (doc, read) in m.gauges.items():
            yield GaugeMetricFamily(PREFIX + name, doc, value=read())
        for name, (doc, label, read_all) in m.labelled_gauges.items():
            gauge = GaugeMetricFamily(PREFIX + name, doc, labels=[label])
            for value_label, value in sorted(read_all().items()):
                gauge.add_metric([value_label], value)
            yield gauge


def _usage(m: Metrics) -> Iterator[Metric]:
    labels = ["provider", "model", "endpoint"]
    families = [CounterMetricFamily(PREFIX + "prompt_tokens", "Input tokens billed", labels=labels),
                CounterMetricFamily(PREFIX + "completion_tokens", "Output tokens billed",
                                    labels=labels),
                CounterMetricFamily(PREFIX + "spend_usd", "Revenue at list price, USD",
                                    labels=labels)]
    for key, sums in sorted(m.tokens.items()):
        for family, value in zip(families, sums, strict=True):
            family.add_metric(list(key), value)
    yield from families
    yield _histograms(PREFIX + "time_to_first_token_seconds",
                      "Time from arrival to the first streamed event", ["provider", "model"],
                      {k: h for k, h in m.ttft.items()})


def _histograms(name: str, doc: str, labels: list[str],
                hists: dict[tuple[str, ...], Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, hist in sorted(hists.items()):
        family.add_metric(list(key), hist.buckets(), hist.sum)
    return family
