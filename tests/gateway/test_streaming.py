"""Streamed completions: exact usage from the upstream, the usage chunk, [DONE] after the ledger."""

from __future__ import annotations

import json
from typing import Any

from tests.gateway.conftest import Harness, StartGateway, chat_body
from tests.gateway.fake_upstream import Faults


def events(body: bytes) -> list[bytes]:
    return [e[len(b"data: "):] for e in body.split(b"\n\n") if e]


async def stream(gw: Harness, **extra: Any) -> tuple[int, dict[str, str], list[bytes]]:
    status, headers, body = await gw.chat(chat_body(content="z" * 80, max_tokens=6, stream=True,
                                                    **extra))
    return status, headers, events(body)


async def test_stream_without_include_usage_is_metered_exactly_and_usage_chunk_stripped(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, evs = await stream(gw)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert evs[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in evs[:-1]]
    assert all(c["choices"] for c in chunks)  # the usage chunk (no choices) is gone
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "x" * 6
    # ... but the gateway asked the upstream for it
    assert gw.fake.calls[-1][1]["stream_options"] == {"include_usage": True}
    row = gw.row(headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["stream"], row["error"]) == (20, 6, 1, "")
    assert row["revenue_usd"] == (20 * 5.0 + 6 * 15.0) / 1e6  # the contract: one division
    assert 0 < row["ttft_ms"] <= row["total_ms"]


async def test_stream_with_include_usage_keeps_the_usage_chunk(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, evs = await stream(gw, stream_options={"include_usage": True})
    assert status == 200 and evs[-1] == b"[DONE]"
    last = json.loads(evs[-2])
    assert last["choices"] == [] and last["usage"] == {"prompt_tokens": 20, "completion_tokens": 6,
                                                       "total_tokens": 26}
    assert gw.row(headers["x-request-id"])["tokens_out"] == 6


async def test_stream_without_upstream_usage_counts_content_chunks(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    gw.fake.faults["openai"] = Faults(omit_usage=True)
    status, headers, evs = await stream(gw)
    assert status == 200 and evs[-1] == b"[DONE]"
    row = gw.row(headers["x-request-id"])
    assert (row["tokens_out"], row["error"]) == (6, "usage_missing")


async def test_done_is_sent_only_after_the_row_is_durable(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    order: list[str] = []
    ledger = gw.gateway.ledger
    real_submit = ledger.submit

    def spying_submit(row: tuple[object, ...]) -> Any:
        fut = real_submit(row)
        fut.add_done_callback(lambda _: order.append("durable"))
        return fut

    ledger.submit = spying_submit  # type: ignore[method-assign]
    h = {"Authorization": "Bearer sk-us-startup-000001", "X-Forwarded-For": "73.0.0.1"}
    async with gw.session.post(gw.url + "/v1/chat/completions", headers=h,
                               json=chat_body(max_tokens=3, stream=True)) as r:
        async for line in r.content:
            if line.startswith(b"data: [DONE]"):
                order.append("done")
    assert order == ["durable", "done"]
