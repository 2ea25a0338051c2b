"""When a mock provider's answer is due: the scenario's latency laws, per request.

Every request draws its time to first token and its tokens per second from the provider's
``latency`` laws (``ttft_ms``, ``tokens_per_s``), exactly the laws the simulator samples
(``sim.latency``); the completion's length is what the client asked for (``max_tokens``, which a
load-test user draws from its segment's ``tokens_out`` law). Without a time scale (1, the
default) that is true time; a run at another scale divides every delay by it and is labelled
*scaled* by whoever reports its latencies.

Streams may carry several tokens per chunk, as real providers' streams sometimes do: tokens that
become ready within ``chunk_interval_s`` of the previous chunk share the next one. That changes
neither the time to first token nor the instant of the last token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.distributions import sample_one
from scenarios.schema import Latency

#: A sampled tokens/s below this is raised to it (a zero rate would never finish).
MIN_TOKENS_PER_S = 0.1
#: Default spacing of streamed chunks (tokens ready closer together share a chunk).
DEFAULT_CHUNK_INTERVAL_S = 0.020


@dataclass(frozen=True, slots=True)
class Timing:
    """One request's service times in wall seconds (already divided by the time scale)."""

    ttft_s: float
    per_token_s: float

    def total_s(self, tokens: int) -> float:
        """First token, then the rest of ``tokens`` at the drawn rate (non-streamed answers)."""
        return self.ttft_s + tokens * self.per_token_s


def draw_timing(latency: Latency, rng: np.random.Generator, *, spike_s: float = 0.0,
                time_scale: float = 1.0) -> Timing:
    """Draw one request's time to first token and per-token time (plus an injected spike)."""
    ttft_ms = max(0.0, sample_one(latency.ttft_ms, rng))
    tps = max(MIN_TOKENS_PER_S, sample_one(latency.tokens_per_s, rng))
    return Timing(ttft_s=(ttft_ms / 1000.0 + spike_s) / time_scale,
                  per_token_s=1.0 / (tps * time_scale))
