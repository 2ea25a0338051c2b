"""The admin API: bearer token, read state/clock/policy, change the clock, reload atomically."""

from __future__ import annotations

from typing import Any

from scenarios.policy import OPENAI_403_BODY
from tests.gateway.conftest import CN_IP, CN_KEY, Harness, StartGateway

TOKEN = "s3cret-admin"


async def admin(gw: Harness, method: str, path: str, body: dict[str, Any] | None = None,
                token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with gw.session.request(method, gw.url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_admin_needs_the_token(start_gateway: StartGateway) -> None:
    gw = await start_gateway(admin_token=TOKEN)
    assert (await admin(gw, "GET", "/admin/state", token=None))[0] == 401
    assert (await admin(gw, "GET", "/admin/state", token="wrong"))[0] == 401
    status, state = await admin(gw, "GET", "/admin/state")
    assert status == 200
    assert state["scenario"] == "openai-2024-cn-hk"
    assert state["clock"] == {"spec": "at:2024-07-10", "describe": "pinned: 2024-07-10T00:00:00Z",
                              "scenario_time": "2024-07-10T00:00:00Z"}
    assert state["stages"]["openai"] == ["announce", "block"]
    assert state["upstreams"]["openai"]["circuit"] == "closed"


async def test_admin_disabled_without_token(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body = await admin(gw, "GET", "/admin/state")
    assert status == 403 and body["error"]["code"] == "admin_disabled"


async def test_pinning_the_clock_changes_decisions(start_gateway: StartGateway) -> None:
    gw = await start_gateway(admin_token=TOKEN, clock="at:2024-06-10")
    assert (await gw.chat(ip=CN_IP, key=CN_KEY))[0] == 200
    status, clock = await admin(gw, "PUT", "/admin/clock", {"clock": "at:2024-07-09T00:00:00Z"})
    assert status == 200 and clock["scenario_time"] == "2024-07-09T00:00:00Z"
    status, headers, body = await gw.chat(ip=CN_IP, key=CN_KEY)
    assert (status, body) == (403, OPENAI_403_BODY)
    assert gw.row(headers["x-request-id"])["scenario_time"] == "2024-07-09T00:00:00Z"
    bad, error = await admin(gw, "PUT", "/admin/clock", {"clock": "at:yesterday"})
    assert bad == 400 and "is not a date" in error["error"]["message"]


async def test_policy_view(start_gateway: StartGateway) -> None:
    gw = await start_gateway(admin_token=TOKEN)
    status, body = await admin(gw, "GET", "/admin/policy")
    assert status == 200
    assert [s["name"] for s in body["policy"]["openai"]["stages"]] == ["announce", "block"]
    assert body["active"]["openai"] == ["announce", "block"]


async def test_reload_swaps_the_scenario_atomically(start_gateway: StartGateway) -> None:
    gw = await start_gateway(admin_token=TOKEN)
    assert (await gw.chat(ip=CN_IP, key=CN_KEY))[0] == 403
    status, state = await admin(gw, "POST", "/admin/reload",
                                {"set": ["policy.openai.stages[1].start=2024-08-01"]})
    assert status == 200 and state["stages"]["openai"] == ["announce"]
    assert (await gw.chat(ip=CN_IP, key=CN_KEY))[0] == 200
    # a bad reload is refused and leaves the running scenario alone
    status, error = await admin(gw, "POST", "/admin/reload", {"set": ["policy.openai.nope=1"]})
    assert status == 400 and error["error"]["message"].startswith("reload refused")
    assert (await gw.chat(ip=CN_IP, key=CN_KEY))[0] == 200
