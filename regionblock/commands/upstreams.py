"""``regionblock upstreams SCENARIO``: mock providers, the relay and the WAN paths on consecutive ports.

Provider i of the scenario's ``providers`` list listens on BASE_PORT+i, the relay on
BASE_PORT+len(providers), then each region's WAN-path proxies (:mod:`gateway.wanpath`), direct
(to ``--relay-target``, the gateway) and relay (to the relay), region by region in scenario order.
Every one of those ports is bound before any server starts (:mod:`gateway.listeners`): a taken
port is one line and exit 2 with nothing served. Everything runs in one process and one event
loop (uvloop when installed) until SIGINT or SIGTERM, then shuts down cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from gateway.listeners import listen_all
from gateway.mock_upstream import DEFAULT_BASE_PORT, Running, listen_names, start_upstreams
from gateway.mock_upstream_errors import ListenError
from gateway.mock_upstream_timing import DEFAULT_CHUNK_INTERVAL_S
from gateway.relay import DEFAULT_RELAY_TARGET
from gateway.wanpath import PathSpec, RunningPath, path_specs, serve_wanpaths
from regionblock.common import (
    add_scenario_arg,
    finite_number,
    listen_host,
    load_scenario,
    seed_number,
    stderr_console,
    tcp_port,
)
from scenarios.errors import UsageError
from scenarios.schema import Scenario


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "upstreams", help="run mock OpenAI-compatible providers, the relay and the WAN paths",
        description="Serve one mock OpenAI-compatible provider per scenario provider (its latency, "
                    "capacity and faults) on consecutive loopback ports, the relay "
                    "(the circumvention path) on the next port, then two WAN-path proxies per "
                    "region (direct to the gateway, relay to the relay) adding the region's "
                    "sampled round trip, until interrupted.")
    add_scenario_arg(p)
    p.add_argument("--host", type=listen_host, default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; every interface: 0.0.0.0)")
    p.add_argument("--base-port", type=tcp_port(), default=DEFAULT_BASE_PORT, metavar="P",
                   help=f"provider i listens on P+i, the relay after them, then the WAN paths "
                        f"(default {DEFAULT_BASE_PORT})")
    p.add_argument("--time-scale", type=finite_number(above=0), default=1.0, metavar="X",
                   help="divide every simulated latency by X (default 1: real time)")
    p.add_argument("--relay-target", default=DEFAULT_RELAY_TARGET, metavar="URL",
                   help=f"where the relay forwards to (default {DEFAULT_RELAY_TARGET}, the gateway)")
    p.add_argument("--chunk-ms", type=finite_number(minimum=0), default=DEFAULT_CHUNK_INTERVAL_S * 1000,
                   metavar="MS",
                   help="streamed tokens ready within MS of the previous chunk share the next one "
                        f"(default {DEFAULT_CHUNK_INTERVAL_S * 1000:g})")
    p.add_argument("--seed", type=seed_number, default=0, metavar="S",
                   help="seed of the latency, fault and relay-address draws (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args).scenario
    _check_args(args, scenario)
    return _run_in_loop(lambda: _serve(scenario, args))


def port_count(scenario: Scenario) -> int:
    """Ports from the base port on: providers, the relay, two WAN paths per region."""
    return len(scenario.providers) + 1 + 2 * len(scenario.regions)


def _check_args(args: argparse.Namespace, scenario: Scenario) -> None:
    n = port_count(scenario)
    if args.base_port + n - 1 > 65535:
        raise UsageError(f"--base-port: {args.base_port} leaves no room for {n} ports "
                         f"(P..P+{n - 1} must lie in 1-65535)")
    if not args.relay_target.startswith(("http://", "https://")):
        raise UsageError(f"--relay-target: {args.relay_target!r} is not an http:// or https:// URL")
    target = urlsplit(args.relay_target)
    try:
        target_port = target.port
    except ValueError:  # out of range or not a number: urllib's own error was a traceback
        raise UsageError(f"--relay-target: {args.relay_target!r} has a bad port (1-65535)") from None
    if not target.hostname:
        raise UsageError(f"--relay-target: {args.relay_target!r} names no host")
    if target_port is None:
        raise UsageError(f"--relay-target: {args.relay_target!r} names no port (the WAN paths "
                         "forward to host:port)")
    if target_port == 0:
        raise UsageError(f"--relay-target: {args.relay_target!r} has a bad port (1-65535)")


def _run_in_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def _serve(scenario: Scenario, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    first_wan = len(scenario.providers) + 1
    # the relay listens on the port after the providers', so the WAN paths are known before it runs
    specs = _specs(scenario, (args.host, args.base_port + first_wan - 1), args.relay_target)
    names = [*listen_names(scenario), *(spec.listen_name for spec in specs)]
    try:
        # every port first: either all the servers listen or none does (gateway.listeners)
        socks = listen_all(args.host, list(zip(range(args.base_port, args.base_port + len(names)),
                                               names, strict=True)))
    except ListenError as exc:
        raise UsageError(f"upstreams: {exc}") from exc
    try:
        async with start_upstreams(scenario, host=args.host, base_port=args.base_port,
                                   time_scale=args.time_scale, seed=args.seed,
                                   relay_target=args.relay_target,
                                   chunk_interval_s=args.chunk_ms / 1000,
                                   socks=socks[:first_wan]) as running, \
                serve_wanpaths(specs, host=args.host, seed=args.seed, time_scale=args.time_scale,
                               socks=socks[first_wan:]) as wan:
            _announce(running, wan, scenario, args)
            await stop.wait()
    finally:
        for sock in socks:   # closed by their servers already, unless one failed to start
            sock.close()
    stderr_console().print("upstreams: stopped")
    return 0


def _specs(scenario: Scenario, relay: tuple[str, int], gateway_url: str) -> list[PathSpec]:
    gw = urlsplit(gateway_url)
    return path_specs(scenario, gateway=(gw.hostname or "127.0.0.1", int(gw.port or 80)),
                      relay=relay)


def _announce(running: Running, wan: list[RunningPath], scenario: Scenario,
              args: argparse.Namespace) -> None:
    """One line per server on stdout (flushed: scripts wait for it), a notice on stderr."""
    width = max(len(s.name) for s in running.servers)
    for server in running.upstreams:
        print(f"{server.name:<{width}}  {server.url}  ({server.detail})")
    relay = scenario.behaviour.relay
    print(f"{running.relay.name:<{width}}  {running.relay.url}  -> {args.relay_target}  "
          f"(exit {relay.country}{' hosting' if relay.hosting else ''}, "
          f"+{relay.extra_latency_ms.mean():.0f} ms mean)")
    wan_width = max((len(f"wan {w.wan.spec.key}") for w in wan), default=0)
    for w in wan:
        spec = w.wan.spec
        print(f"{'wan ' + spec.key:<{wan_width}}  {w.url}  -> {spec.target_host}:{spec.target_port}"
              f"  (round trip {spec.rtt_ms.mean():.0f} ms mean)")
    sys.stdout.flush()
    stderr_console().print(f"time scale {args.time_scale:g}x, seed {args.seed}; "
                           "Ctrl-C or SIGTERM to stop")
