"""Cross-engine tests: the same organisation and events through the simulator's adapter and the
load test's (or the gateway's), expecting the same transitions, requests and money.

The in-process gateway fixtures are the gateway tests' own (one harness for both suites)."""

from tests.gateway.conftest import fake_server, loaded, start_gateway

__all__ = ["fake_server", "loaded", "start_gateway"]
