"""The locustfile: ``locust -f loadtests/locustfile.py`` replays a scenario against a gateway.

``regionblock loadtest`` runs it for you (starting the gateway, upstreams, relay and WAN paths).
To drive Locust yourself (headless or in its web UI), say what to replay in the environment::

    REGIONBLOCK_SCENARIO=openai-2024-cn-hk REGIONBLOCK_DURATION=5m REGIONBLOCK_USERS=40 \\
    REGIONBLOCK_RATE=50 REGIONBLOCK_ADMIN_TOKEN=TOKEN \\
    REGIONBLOCK_RELAY_URL=http://127.0.0.1:18106 REGIONBLOCK_EVENTS_DIR=events \\
        locust -f loadtests/locustfile.py --host http://127.0.0.1:18080

with the gateway started with the same admin token (``regionblock gateway ... --admin-token
TOKEN``). The scenario clock starts when the test starts (Locust's ``test_start``: the Start
button, or at once when headless), a few seconds later so every user is spawned: Locust then
sets the gateway's clock to the same compressed mapping through its admin API
(``PUT /admin/clock``; without ``REGIONBLOCK_ADMIN_TOKEN`` it warns that the gateway's clock is
the user's to set), and in a distributed run the master sends the epoch to every worker.
``REGIONBLOCK_EPOCH`` fixes the epoch instead (the gateway then runs ``--compress 5m@EPOCH``);
with ``REGIONBLOCK_EPOCH_FILE`` every process waits until that file exists and reads the epoch
from it (``regionblock loadtest`` writes it once all are ready).

The load shape (:class:`PlanUsers`) always runs exactly the plan's ``REGIONBLOCK_USERS`` users,
one organisation each, whatever ``-u`` says (the web UI asks for no user count).
``REGIONBLOCK_WAN`` (a JSON object ``{"REGION/path": URL}``) sends each region's requests through
its WAN-path proxy. Other variables: ``REGIONBLOCK_SET`` (a JSON list of ``PATH=VALUE``
overrides), ``_SEED``, ``_MAX_TOKENS_IN``, ``_MAX_TOKENS_OUT`` (0: no cap, the default),
``_WORKERS`` (the number of Locust worker processes, when distributed). Locust stops itself
once every user is done, or ``REGIONBLOCK_DRAIN_S`` (default 120) seconds after the last
planned send.
"""

from __future__ import annotations

import os
import time
from typing import Any

import gevent
from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.plan import DEFAULT_USERS, ENV_PREFIX, config_from_os_env
from loadtests.users import (
    WORLD_ATTR,
    Completion,
    OrgUser,
    WorldHolder,
    on_test_start,
    stop_after_run,
)

__all__ = ["OrgUser", "PlanUsers"]

DEFAULT_LEAD_S = 5.0


class PlanUsers(LoadTestShape):
    """Exactly the plan's users, all spawned at once, for the whole run (``-u`` is ignored):
    each user plays one planned organisation, so a different count would play another world."""

    def tick(self) -> tuple[int, float]:
        users = int(os.environ.get(ENV_PREFIX + "USERS") or DEFAULT_USERS)
        return users, float(users)


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    config = config_from_os_env(default_epoch=time.time() + DEFAULT_LEAD_S)
    completion = Completion(environment, config)
    completion.listen()
    # Whoever reports (a stand-alone runner or the master) stops when the run is over, which
    # writes Locust's reports; -t stays as a safety net.
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(stop_after_run, environment, config, completion)
    if config.epoch_on_start and not isinstance(environment.runner, WorkerRunner):
        environment.events.test_start.add_listener(
            lambda **_: on_test_start(environment, config, completion, DEFAULT_LEAD_S))
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users
    holder = WorldHolder()
    setattr(environment, WORLD_ATTR, holder)
    gevent.spawn(holder.build, environment, config, completion)


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    holder = getattr(environment, WORLD_ATTR, None)
    if holder is not None and holder.world is not None:
        holder.world.events.close()
