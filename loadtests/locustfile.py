"""The locustfile: ``locust -f loadtests/locustfile.py`` replays a scenario against a gateway.

``regionblock loadtest`` runs it for you (starting the gateway, upstreams and relay). To drive
Locust yourself, say what to replay in the environment::

    REGIONBLOCK_SCENARIO=openai-2024-cn-hk REGIONBLOCK_DURATION=5m REGIONBLOCK_USERS=40 \\
    REGIONBLOCK_RATE=50 REGIONBLOCK_EPOCH=$(date -d '+20 seconds' +%s) \\
    REGIONBLOCK_RELAY_URL=http://127.0.0.1:18106 REGIONBLOCK_EVENTS_DIR=events \\
        locust -f loadtests/locustfile.py --headless -u 40 -r 40 -t 6m --host http://127.0.0.1:18080

and start the gateway with the same clock (``--compress 5m@EPOCH``). Other variables:
``REGIONBLOCK_SET`` (a JSON list of ``PATH=VALUE`` overrides), ``_SEED``, ``_MAX_TOKENS_IN``,
``_MAX_TOKENS_OUT``, ``_WORKERS`` (the number of Locust worker processes, when distributed).
``-u`` should equal ``REGIONBLOCK_USERS``: each Locust user plays one organisation. Without
``REGIONBLOCK_EPOCH`` the scenario starts 5 s after Locust does (single process only: workers
must share an epoch); with ``REGIONBLOCK_EPOCH_FILE`` every process waits until that file
exists and reads the epoch from it (``regionblock loadtest`` writes it once all are ready).
Locust stops itself ``REGIONBLOCK_DRAIN_S`` (default 5) seconds after the last planned send.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.plan import config_from_os_env
from loadtests.users import WORLD_ATTR, OrgUser, WorldHolder, stop_after_run

__all__ = ["OrgUser"]

DEFAULT_LEAD_S = 5.0


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    config = config_from_os_env(default_epoch=time.time() + DEFAULT_LEAD_S)
    # Whoever reports (a stand-alone runner or the master) stops when the run is over, which
    # writes Locust's reports; -t stays as a safety net.
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(stop_after_run, environment, config)
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users
    holder = WorldHolder()
    setattr(environment, WORLD_ATTR, holder)
    gevent.spawn(holder.build, environment, config)


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    holder = getattr(environment, WORLD_ATTR, None)
    if holder is not None and holder.world is not None:
        holder.world.events.close()
