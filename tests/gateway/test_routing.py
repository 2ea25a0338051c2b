"""Routing: policy-aware failover, retries, timeouts and the circuit breaker."""

from __future__ import annotations

import json

from gateway.circuit_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gateway.config import UpstreamPolicy, UpstreamUrl
from scenarios.policy import OPENAI_403_BODY
from tests.gateway.conftest import CN_IP, CN_KEY, US_IP, StartGateway, chat_body
from tests.gateway.fake_upstream import Faults
from tests.gateway.test_hardening import body_of, post, raw, status_of
from tests.gateway.test_hostile import header

CN_ENTERPRISE = "sk-cn-enterprise-000007"
US_ENTERPRISE = "sk-us-enterprise-000007"


async def test_blocked_enterprise_fails_over_to_an_alternative(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, body = await gw.chat(chat_body(model="gpt-4o", max_tokens=4), ip=CN_IP,
                                          key=CN_ENTERPRISE)
    assert status == 200
    assert [p for p, _ in gw.fake.calls] == ["alibaba"]  # never openai: a block is not retried there
    assert gw.fake.calls[0][1]["model"] == "qwen-plus"  # Provider.substitute_for
    assert (headers["x-regionblock-provider"], headers["x-regionblock-path"]) == ("alibaba", "failover")
    assert json.loads(body)["model"] == "qwen-plus"
    row = gw.row(headers["x-request-id"])
    assert (row["provider"], row["model"], row["path"], row["decision"]) == (
        "alibaba", "qwen-plus", "failover", "allow")
    assert row["revenue_usd"] == (10 * 0.55 + 4 * 1.66) / 1e6  # the contract: one division


async def test_blocked_startup_has_no_failover_rule(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, _, body = await gw.chat(ip=CN_IP, key=CN_KEY)
    assert (status, body, gw.fake.calls) == (403, OPENAI_403_BODY, [])


async def test_upstream_5xx_is_retried_then_succeeds(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=2))
    gw.fake.faults["openai"] = Faults(fail_next=2, status=503)
    status, headers, _ = await gw.chat()
    assert status == 200
    assert [p for p, _ in gw.fake.calls] == ["openai"] * 3
    assert gw.row(headers["x-request-id"])["decision"] == "allow"


async def test_reset_connection_is_retried(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=1))
    gw.fake.faults["openai"] = Faults(reset_next=1)
    status, _, _ = await gw.chat()
    assert status == 200


async def test_exhausted_retries_pass_the_upstream_error_through(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=1))
    gw.fake.faults["openai"] = Faults(fail_next=5, status=500)
    status, headers, body = await gw.chat()
    assert status == 500 and json.loads(body)["error"]["message"] == "injected"
    assert len(gw.fake.calls) == 2
    row = gw.row(headers["x-request-id"])
    assert (row["decision"], row["status"], row["error"]) == ("failed", 500, "upstream_500")


async def test_upstream_error_fails_over_for_enterprise(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=0))
    gw.fake.faults["openai"] = Faults(fail_next=1, status=502)
    status, headers, _ = await gw.chat(ip=US_IP, key=US_ENTERPRISE)
    assert status == 200
    # alibaba does not serve the US (scenario `serves`), deepseek does
    assert [p for p, _ in gw.fake.calls] == ["openai", "deepseek"]
    row = gw.row(headers["x-request-id"])
    assert (row["provider"], row["model"], row["path"]) == ("deepseek", "deepseek-chat", "failover")


async def test_upstream_timeout_is_504(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=0, response_timeout_s=0.2))
    gw.fake.faults["openai"] = Faults(stall_s=1.0)
    status, headers, body = await gw.chat()
    assert status == 504
    assert json.loads(body)["error"]["code"] == "upstream_timeout"
    assert gw.row(headers["x-request-id"])["error"] == "upstream_timeout"


async def test_circuit_opens_and_fails_fast(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=0, breaker_failures=2,
                                                            breaker_cooldown_s=60))
    gw.fake.faults["openai"] = Faults(fail_next=10, status=500)
    assert (await gw.chat())[0] == 500
    assert (await gw.chat())[0] == 500
    status, _, body = await gw.chat()
    assert status == 503 and json.loads(body)["error"]["code"] == "circuit_open"
    assert len(gw.fake.calls) == 2  # the third never reached the upstream
    async with gw.session.get(gw.url + "/metrics") as r:
        assert 'regionblock_gateway_upstream_up{provider="openai"} 0.0' in await r.text()


async def test_stream_failover_keeps_exact_usage(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, headers, body = await gw.chat(chat_body(max_tokens=3, stream=True), ip=CN_IP,
                                          key=CN_ENTERPRISE)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    row = gw.row(headers["x-request-id"])
    assert (row["provider"], row["tokens_in"], row["tokens_out"], row["path"]) == (
        "alibaba", 10, 3, "failover")


def test_breaker_state_machine() -> None:
    b = CircuitBreaker(failures=3, cooldown_s=10)
    for t in (0, 1):
        b.failure(t)
        assert b.state(t) == CLOSED
    b.failure(2)
    assert (b.state(2), b.allow(5)) == (OPEN, False)
    assert b.state(12) == HALF_OPEN
    assert b.allow(12) is True and b.allow(12) is False  # one probe at a time
    b.failure(13)
    assert b.state(13) == OPEN and b.state(23) == HALF_OPEN
    assert b.allow(23)
    b.success()
    assert b.state(23) == CLOSED and b.opened_total == 2


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    b = CircuitBreaker(failures=1, cooldown_s=10)
    b.failure(0)
    assert b.allow(10) is True and b.allow(10) is False     # the probe is out
    b.abandon()                                             # ... and ended with no answer
    assert b.state(10) == HALF_OPEN and b.allow(10) is True  # another may probe
    b.success()
    assert b.state(11) == CLOSED


async def test_a_probe_cancelled_inside_the_upstream_call_does_not_hold_the_circuit_open() -> None:
    """The half-open probe's call ends in neither an answer nor an upstream error (cancelled, or
    an unexpected exception): the breaker must let the next request probe. Before, its probe
    flag stayed set and every later request got 503 circuit_open for good (seen in the e2e
    kill -9 test under load: 200,000 503s in 60 s)."""
    import asyncio

    from gateway.errors import CircuitOpen
    from gateway.metrics import Metrics
    from gateway.upstreams import Upstreams

    loop = asyncio.get_running_loop()
    ups = Upstreams(UpstreamPolicy(retries=0, breaker_failures=1, breaker_cooldown_s=0),
                    Metrics(), loop)
    url = UpstreamUrl("127.0.0.1", 9)
    ups.configure({"openai": url})                    # never reached: its request is replaced
    pool = ups._pools[url]
    breaker = ups._breakers["openai"]
    breaker.failure(loop.time())                      # open; half-open at once (cooldown 0)
    outcomes: list[BaseException] = [asyncio.CancelledError(), RuntimeError("unexpected")]

    async def request(*_: object, **__: object) -> object:
        raise outcomes.pop(0)

    pool.request = request  # type: ignore[method-assign]
    for expected in (asyncio.CancelledError, RuntimeError):
        try:
            await ups.call("openai", "/v1/chat/completions", b"{}")
        except expected:
            pass
        except CircuitOpen:
            raise AssertionError("the abandoned probe held the circuit open") from None
        assert breaker.allow(loop.time()) is True     # the next request may probe
        breaker.abandon()



async def test_a_providers_429_reaches_the_client_with_its_retry_after(
        start_gateway: StartGateway) -> None:
    """On the wire: the provider's own 429 and its Retry-After (and retry-after-ms, which the
    openai SDK reads first) reach the client; a 429 is not retried."""
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=2))
    gw.fake.faults["openai"] = Faults(fail_next=1, status=429,
                                      headers={"Retry-After": "7", "retry-after-ms": "6500"})
    response = await raw(gw, post(json.dumps(chat_body()).encode()))
    assert status_of(response) == 429
    assert header(response, b"retry-after") == b"7"
    assert header(response, b"retry-after-ms") == b"6500"
    assert json.loads(body_of(response))["error"]["message"] == "injected"
    assert len(gw.fake.calls) == 1
    rid = header(response, b"x-request-id")
    assert rid is not None
    row = gw.row(rid.decode())
    assert (row["status"], row["decision"], row["error"]) == (429, "failed", "upstream_429")


async def test_a_providers_final_503_keeps_its_retry_after(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstream_policy=UpstreamPolicy(retries=0))
    gw.fake.faults["openai"] = Faults(fail_next=1, status=503, headers={"Retry-After": "30"})
    response = await raw(gw, post(json.dumps(chat_body()).encode()))
    assert status_of(response) == 503
    assert header(response, b"retry-after") == b"30"
