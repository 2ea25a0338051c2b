"""The chat pipeline in-process: allow, warn, block, metering, identity, models."""

from __future__ import annotations

import json

from scenarios.policy import OPENAI_403_BODY, STAGE_HEADER, WARN_HEADER
from tests.gateway.conftest import (
    BEFORE_BLOCK,
    CN_IP,
    CN_KEY,
    US_IP,
    StartGateway,
    chat_body,
)


async def test_us_client_gets_a_completion_and_an_exact_ledger_row(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, body = await gw.chat(chat_body(content="y" * 41, max_tokens=7))
    assert status == 200
    answer = json.loads(body)
    assert answer["usage"] == {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}
    row = gw.row(headers["x-request-id"])
    assert {k: row[k] for k in ("org", "home_region", "country", "asn", "asn_class", "provider",
                                "model", "decision", "stage", "status", "tokens_in", "tokens_out",
                                "path", "stream", "error", "ttft_ms", "scenario_time")} == {
        "org": "us-startup-000001", "home_region": "US", "country": "US", "asn": None,
        "asn_class": "isp", "provider": "openai", "model": "gpt-4o", "decision": "allow",
        "stage": "", "status": 200, "tokens_in": 10, "tokens_out": 7, "path": "direct",
        "stream": 0, "error": "", "ttft_ms": None, "scenario_time": "2024-07-10T00:00:00Z"}
    assert row["revenue_usd"] == (10 * 5.00 + 7 * 15.00) / 1e6  # the contract: one division
    assert row["upstream_ms"] > 0 and row["total_ms"] >= row["upstream_ms"]


async def test_cn_client_after_the_block_gets_the_exact_openai_403(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, body = await gw.chat(ip=CN_IP, key=CN_KEY)
    assert status == 403
    assert body == OPENAI_403_BODY
    assert headers["content-type"] == "application/json"
    assert gw.fake.calls == []  # a block never reaches the upstream
    row = gw.row(headers["x-request-id"])
    assert (row["decision"], row["stage"], row["status"], row["country"], row["tokens_in"],
            row["revenue_usd"]) == ("block", "block", 403, "CN", 0, 0.0)


async def test_cn_client_during_the_announcement_is_warned(start_gateway: StartGateway) -> None:
    gw = await start_gateway(clock="at:2024-06-30")
    status, headers, _ = await gw.chat(ip=CN_IP, key=CN_KEY)
    assert status == 200
    assert headers[STAGE_HEADER] == "announce"
    assert headers[WARN_HEADER].startswith("Your organization has API traffic from a region")
    assert gw.row(headers["x-request-id"])["decision"] == "warn"


async def test_cn_client_before_the_block_is_allowed(start_gateway: StartGateway) -> None:
    gw = await start_gateway(clock=BEFORE_BLOCK)
    status, headers, _ = await gw.chat(ip=CN_IP, key=CN_KEY)
    assert status == 200
    assert gw.row(headers["x-request-id"])["scenario_time"] == "2024-06-10T00:00:00Z"


async def test_allow_listed_segment_passes_the_block(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, _ = await gw.chat(ip=CN_IP, key="sk-cn-enterprise-azure-000003")
    assert status == 200
    row = gw.row(headers["x-request-id"])
    assert (row["decision"], row["stage"]) == ("allow", "block")


async def test_no_api_key_is_openai_401_and_recorded(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, body = await gw.chat(key=None)
    assert status == 401
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] is None
    assert error["message"].startswith("You didn't provide an API key.")
    row = gw.row(headers["x-request-id"])
    assert (row["decision"], row["status"], row["org"]) == ("failed", 401, "")


async def test_unknown_model_is_404_model_not_found(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, _, body = await gw.chat(chat_body(model="gpt-9"))
    assert status == 404
    assert json.loads(body)["error"] == {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}


async def test_model_not_yet_released_is_not_found(start_gateway: StartGateway) -> None:
    gw = await start_gateway()  # gpt-4o-mini arrives 2024-07-18
    status, _, _ = await gw.chat(chat_body(model="gpt-4o-mini"))
    assert status == 404


async def test_model_selects_its_provider(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, _ = await gw.chat(chat_body(model="deepseek-chat", max_tokens=3))
    assert status == 200
    assert gw.fake.calls[-1][0] == "deepseek"
    row = gw.row(headers["x-request-id"])
    assert row["provider"] == "deepseek"
    assert row["revenue_usd"] == (10 * 0.14 + 3 * 0.28) / 1e6  # the contract: one division


async def test_models_lists_what_is_sold_now(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    async with gw.session.get(gw.url + "/v1/models") as r:
        data = (await r.json())["data"]
    ids = {m["id"]: m["owned_by"] for m in data}
    assert ids["gpt-4o"] == "openai" and ids["qwen-plus"] == "alibaba"
    assert "gpt-4o-mini" not in ids


async def test_health_ready_and_unknown_routes(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    async with gw.session.get(gw.url + "/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    async with gw.session.get(gw.url + "/readyz") as r:
        assert r.status == 200 and (await r.json())["ready"] is True
    async with gw.session.get(gw.url + "/v1/nothing") as r:
        assert r.status == 404
        assert (await r.json())["error"]["message"] == "Invalid URL (GET /v1/nothing)"
    async with gw.session.get(gw.url + "/v1/chat/completions") as r:
        assert r.status == 405


async def test_us_ip_is_counted_by_country_in_metrics(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    await gw.chat(ip=US_IP)
    await gw.chat(ip=CN_IP, key=CN_KEY)
    async with gw.session.get(gw.url + "/metrics") as r:
        text = await r.text()
    assert ('regionblock_gateway_requests_total{country="US",decision="allow",provider="openai",'
            'status="200"} 1.0') in text
    assert ('regionblock_gateway_requests_total{country="CN",decision="block",provider="openai",'
            'status="403"} 1.0') in text
    assert 'regionblock_gateway_upstream_up{provider="openai"} 1.0' in text
    assert "regionblock_gateway_ledger_lag_seconds" in text
