"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ragserve_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "ragserve_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "ragserve_time_to_first_token_seconds",
            "Time to first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.generations = Counter(
            "ragserve_generations", "Finished generations", ["finish_reason"], registry=r
        )
        self.tokens = Counter("ragserve_tokens", "Tokens processed", ["kind"], registry=r)
        self.decode_rate = Histogram(
            "ragserve_decode_tokens_per_second",
            "Decode speed",
            buckets=(1, 5, 10, 25, 50, 100, 200, 400, 800),
            registry=r,
        )
        self.queue_depth = Gauge(
            "ragserve_queue_depth", "Requests waiting for the model", registry=r
        )
        self.slots_busy = Gauge(
            "ragserve_slots_busy", "Requests being generated (batched together)", registry=r
        )
        self.slots = Gauge("ragserve_slots", "Requests the engine generates at once", registry=r)
        self.retrieval = Histogram(
            "ragserve_retrieval_seconds", "Retrieval latency", buckets=LATENCY_BUCKETS, registry=r
        )
        self.index_chunks = Gauge("ragserve_index_chunks", "Chunks in the loaded index", registry=r)
        self.index_documents = Gauge(
            "ragserve_index_documents", "Documents in the loaded index", registry=r
        )
        self.sources_used = Histogram(
            "ragserve_sources_used",
            "Sources packed into a prompt",
            buckets=(0, 1, 2, 3, 5, 8, 13, 21),
            registry=r,
        )

    def observe_generation(
        self,
        prompt: int,
        completion: int,
        cached: int,
        ttft_s: float,
        decode_s: float,
        finish_reason: str = "stop",
    ) -> None:
        self.generations.labels(finish_reason).inc()
        self.tokens.labels("prompt").inc(prompt)
        self.tokens.labels("prompt_cached").inc(cached)
        self.tokens.labels("completion").inc(completion)
        if completion:  # ended before a first token (refused, failed): no TTFT to speak of
            self.ttft.observe(ttft_s)
        if completion > 1 and decode_s > 0:
            self.decode_rate.observe((completion - 1) / decode_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
