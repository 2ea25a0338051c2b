"""/metrics as Prometheus reads it: parsed with prometheus_client's own parser, values exact."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.gateway.conftest import CN_IP, CN_KEY, StartGateway, chat_body

PREFIX = "regionblock_gateway_"


def _samples(text: str) -> tuple[dict[str, str], list[Sample]]:
    """(family name → type, every sample) of an exposition."""
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples.extend(family.samples)
    return types, samples


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for s in samples if s.name == name])
    return found[0]


async def test_token_spend_and_ttft_metrics_are_exact(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    assert (await gw.chat(chat_body(max_tokens=5)))[0] == 200  # 40 chars: 10 in, 5 out
    assert (await gw.chat(chat_body(max_tokens=7, stream=True)))[0] == 200
    assert (await gw.chat(ip=CN_IP, key=CN_KEY))[0] == 403  # blocked: no tokens, no spend
    async with gw.session.get(gw.url + "/metrics") as r:
        text = await r.text()
    types, samples = _samples(text)
    labels = {"provider": "openai", "model": "gpt-4o", "endpoint": "chat"}
    assert _value(samples, PREFIX + "prompt_tokens_total", **labels) == 20
    assert _value(samples, PREFIX + "completion_tokens_total", **labels) == 12
    assert _value(samples, PREFIX + "spend_usd_total", **labels) == (20 * 5.0 + 12 * 15.0) / 1e6
    ttft = {"provider": "openai", "model": "gpt-4o"}
    assert _value(samples, PREFIX + "time_to_first_token_seconds_count", **ttft) == 1
    assert 0 < _value(samples, PREFIX + "time_to_first_token_seconds_sum", **ttft) < 10
    assert _value(samples, PREFIX + "ledger_rows_total") == 3
    assert types[PREFIX + "ledger_rows"] == "counter"
    assert {PREFIX + "time_to_first_token_seconds", PREFIX + "request_duration_seconds",
            PREFIX + "upstream_duration_seconds"} <= {n for n, t in types.items() if t == "histogram"}


async def test_naming_conventions_and_default_process_metrics(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    await gw.chat()
    async with gw.session.get(gw.url + "/metrics") as r:
        types, samples = _samples(await r.text())
    for s in samples:
        kind = types[next(n for n in types if s.name.startswith(n))]
        if kind == "counter":
            assert s.name.endswith(("_total", "_created")), s.name
        assert not {"org", "organisation", "organization", "ip", "key", "user"} & set(s.labels), s
    durations = [n for n in types if n.startswith(PREFIX) and ("duration" in n or "ttft" in n
                                                                or "lag" in n)]
    assert durations and all(n.endswith("_seconds") for n in durations)
    names = {s.name for s in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
            "python_info", "python_gc_collections_total"} <= names
