"""The load plan: which organisations become Locust users, and what each of them will send.

Scale. The scenario's world (tens of thousands of organisations, millions of requests a day)
cannot be replayed one to one, so a load test keeps its *shape*:

* **Users.** ``users`` organisations are drawn from ``build_population(scenario, seed)``,
  stratified by region × segment: every stratum gets one user when there are enough users,
  else every region gets one (its largest segment), and the rest go to strata in proportion to
  their organisation counts (largest remainder). Within a stratum the organisations are drawn
  uniformly without replacement. A user stands for ``weight`` = stratum organisations / users
  drawn from the stratum, so weighted organisation counts add up to the scenario's.
* **Rate.** ``rate`` is the aggregate target in requests per wall second when every
  organisation is active, averaged over a week. A user's share of it is its stratum's share of
  the population's requests per hour, split equally between the stratum's users (so region and
  segment traffic shares are the population's, not those of a few heavy-tailed draws). The
  curve follows :func:`scenarios.traffic.hourly_intensity` by the user's region; behaviour (churn,
  retries) then thins or adds to it while the test runs.

Everything a user sends is drawn here, up front, from seeded generators: the arrival instants,
and per request the prompt and completion tokens (from the segment's distributions, as the
simulator draws them: uncapped unless ``max_tokens_in`` / ``max_tokens_out`` set a cap, which then
makes the run's figures differ from the model's) and whether it streams. Every request asks for
the organisation's main model, drawn once per organisation from its segment's mix
(``scenarios.population.main_models``), as in the simulator. The plan is a pure function of the
configuration, so every Locust process (master, workers) and the analysis afterwards compute the
very same plan.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from loadtests import traffic
from scenarios.distributions import sample
from scenarios.errors import UsageError
from scenarios.geo import Geo
from scenarios.loader import Loaded, load
from scenarios.policy import first_denial
from scenarios.population import Org, build_population, main_model_names, segment_counts
from scenarios.sample import Sample, SampledOrg
from scenarios.schema import Scenario
from scenarios.traffic import hourly_intensity, window_hours

ENV_PREFIX = "REGIONBLOCK_"
#: The network paths a region's traffic takes (each has a WAN-path proxy in a local run).
PATHS = ("direct", "relay")
DEFAULT_USERS = 40
#: The most users one Locust process plays. Every user is spawned at once and must have started
#: (its organisation's schedule drawn, waiting for the epoch) within the run's 30 s readiness
#: deadline (``loadtests.run.Options.ready_timeout_s``); one process started 5,000 in about 15 s
#: on two shared cores (BENCHMARKS.md, "Load test in true time"), so 8,000 leave a fifth of the
#: deadline spare. Local Locust workers each play their share (``--workers``, one per CPU helps).
MAX_USERS_PER_PROCESS = 8_000
DEFAULT_RATE = 50.0
#: 0: no cap (the simulator applies none); a positive value caps the planned tokens.
DEFAULT_MAX_TOKENS_IN = 0
DEFAULT_MAX_TOKENS_OUT = 0
DEFAULT_DRAIN_S = 120.0


@dataclass(frozen=True, kw_only=True)
class LoadConfig:
    """What a load test replays and how hard: shared by the orchestrator and every Locust process.

    It travels to Locust processes as ``REGIONBLOCK_*`` environment variables (:meth:`to_env`,
    :meth:`from_env`), so a plain ``locust -f loadtests/locustfile.py`` can be driven the same way.
    """

    scenario: str
    overrides: tuple[str, ...] = ()
    duration_s: float
    epoch: float
    users: int = DEFAULT_USERS
    rate: float = DEFAULT_RATE
    seed: int = 0
    max_tokens_in: int = DEFAULT_MAX_TOKENS_IN
    max_tokens_out: int = DEFAULT_MAX_TOKENS_OUT
    relay_url: str = ""
    #: WAN-path proxy per "REGION/path" (direct, relay): the base URL that region's users send to
    wan: tuple[tuple[str, str], ...] = ()
    events_dir: str = ""
    epoch_file: str = ""  # when set, users wait for it and read the epoch from it
    #: After the last planned send, the longest Locust waits for answers and retries before it
    #: stops (it stops as soon as every user is done): true-time completions take seconds to minutes.
    drain_s: float = DEFAULT_DRAIN_S
    run_id: str = "lt"
    workers: int = 1
    market_file: str = ""  # the full-market simulation's market context (scenarios.market)
    #: neither an epoch nor an epoch file given: the epoch is fixed at Locust's test_start
    epoch_on_start: bool = False

    def __post_init__(self) -> None:
        checks = (
            (self.duration_s > 0 and math.isfinite(self.duration_s), "duration", self.duration_s),
            (self.users >= 1, "users", self.users),
            (self.rate > 0 and math.isfinite(self.rate), "rate", self.rate),
            (self.max_tokens_in >= 0, "max-tokens-in", self.max_tokens_in),
            (self.max_tokens_out >= 0, "max-tokens-out", self.max_tokens_out),
            (self.workers >= 1, "workers", self.workers),
        )
        for ok, flag, value in checks:
            if not ok:
                least = "must not be negative" if flag.startswith("max-tokens") else \
                    "must be greater than zero"
                raise UsageError(f"--{flag}: {value!r} {least}")

    def to_env(self) -> dict[str, str]:
        out = {}
        for key, value in asdict(self).items():
            if key == "epoch_on_start":
                continue  # derived: no REGIONBLOCK_EPOCH and no _EPOCH_FILE
            if key == "overrides":
                out[ENV_PREFIX + "SET"] = json.dumps(list(value))
            elif key == "wan":
                out[ENV_PREFIX + "WAN"] = json.dumps(dict(value))
            elif key == "duration_s":
                out[ENV_PREFIX + "DURATION"] = f"{value!r}s"
            else:
                out[ENV_PREFIX + key.upper()] = str(value)
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, default_epoch: float) -> LoadConfig:
        """Read the configuration; ``REGIONBLOCK_SCENARIO`` and ``_DURATION`` are required."""
        from scenarios.clock import parse_duration

        def get(key: str, default: str = "") -> str:
            return env.get(ENV_PREFIX + key.upper(), default).strip()

        if not get("scenario"):
            raise UsageError(f"{ENV_PREFIX}SCENARIO: not set (a scenario name or file)")
        if not get("duration"):
            raise UsageError(f"{ENV_PREFIX}DURATION: not set (e.g. 60s, 5m)")
        try:
            overrides = tuple(str(o) for o in json.loads(get("set") or "[]"))
            wan = tuple((str(k), str(v)) for k, v in json.loads(get("wan") or "{}").items())
            return cls(
                scenario=get("scenario"), overrides=overrides,
                duration_s=parse_duration(get("duration"), what=ENV_PREFIX + "DURATION"),
                epoch=float(get("epoch") or default_epoch),
                users=int(get("users") or DEFAULT_USERS), rate=float(get("rate") or DEFAULT_RATE),
                seed=int(get("seed") or 0),
                max_tokens_in=int(get("max_tokens_in") or DEFAULT_MAX_TOKENS_IN),
                max_tokens_out=int(get("max_tokens_out") or DEFAULT_MAX_TOKENS_OUT),
                relay_url=get("relay_url"), wan=wan, events_dir=get("events_dir"),
                epoch_file=get("epoch_file"), drain_s=float(get("drain_s") or DEFAULT_DRAIN_S),
                run_id=get("run_id") or "lt", workers=int(get("workers") or 1),
                market_file=get("market_file"),
                epoch_on_start=not get("epoch") and not get("epoch_file"),
            )
        except (ValueError, AttributeError) as exc:
            raise UsageError(f"{ENV_PREFIX}*: {exc}") from None


def config_from_os_env(default_epoch: float) -> LoadConfig:
    return LoadConfig.from_env(os.environ, default_epoch=default_epoch)


# ---------------------------------------------------------------- the users


@dataclass(frozen=True)
class Stratum:
    region: str
    segment: str
    orgs: tuple[Org, ...]

    @property
    def requests_per_hour(self) -> float:
        return sum(o.requests_per_hour for o in self.orgs)


@dataclass(frozen=True)
class UserSpec:
    """One Locust user: an organisation, whom it stands for, and its share of the rate."""

    index: int
    org: Org
    weight: float  # organisations of the scenario this user stands for
    share: float  # fraction of the aggregate rate (sum over users = 1)
    model: str = ""  # its main incumbent model (scenarios.population.main_models)


def strata(population: list[Org]) -> list[Stratum]:
    """Region × segment groups in population order (which is scenario order)."""
    groups: dict[tuple[str, str], list[Org]] = {}
    for org in population:
        groups.setdefault((org.region, org.segment), []).append(org)
    return [Stratum(r, g, tuple(orgs)) for (r, g), orgs in groups.items()]


def allocate(users: int, groups: list[Stratum]) -> list[int]:
    """Users per stratum: one each if possible, else one per region, the rest by size."""
    alloc = [0] * len(groups)
    if users >= len(groups):
        alloc = [1] * len(groups)
    elif users >= len({g.region for g in groups}):
        for region in dict.fromkeys(g.region for g in groups):
            largest = max((i for i, g in enumerate(groups) if g.region == region),
                          key=lambda i: len(groups[i].orgs))
            alloc[largest] = 1
    rest = users - sum(alloc)
    while rest > 0:
        room = [len(g.orgs) - a for g, a in zip(groups, alloc, strict=True)]
        total = sum(room)
        if total == 0:
            break
        extra = segment_counts(min(rest, total), [r / total for r in room])
        extra = [min(e, r) for e, r in zip(extra, room, strict=True)]
        alloc = [a + e for a, e in zip(alloc, extra, strict=True)]
        rest = users - sum(alloc)
    return alloc


def sample_users(s: Scenario, users: int, seed: int) -> list[UserSpec]:
    """The organisations that become Locust users (see the module docstring)."""
    population = build_population(s, seed)
    main = main_model_names(s, seed, population)
    groups = strata(population)
    alloc = allocate(users, groups)
    traffic_total = sum(g.requests_per_hour for g, a in zip(groups, alloc, strict=True) if a)
    out: list[UserSpec] = []
    for gi, (group, n) in enumerate(zip(groups, alloc, strict=True)):
        if n == 0:
            continue
        rng = np.random.default_rng([seed, 101, gi])
        picks = sorted(rng.choice(len(group.orgs), size=n, replace=False).tolist())
        share = group.requests_per_hour / traffic_total / n
        weight = len(group.orgs) / n
        out += [UserSpec(len(out) + k, group.orgs[i], weight, share, main[group.orgs[i].id])
                for k, i in enumerate(picks)]
    return out


# ---------------------------------------------------------------- what each user sends


@dataclass(frozen=True)
class Schedule:
    """One user's planned requests: wall offsets from the epoch and what each one asks for."""

    offsets: np.ndarray  # wall seconds after the epoch, sorted
    models: tuple[str, ...]  # the incumbent's model names (migrants send the substitute)
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    stream: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)


#: How long a request may stay in flight, for sizing a user's pool: twice the p99 latency of the
#: default scenario's slowest path in true time (33 s: generation of long outputs at a slow
#: provider, over the relay).
IN_FLIGHT_S = 60.0
#: The most requests one organisation has in flight: the openai SDK's own connection limit
#: (httpx's default max_connections is 1,000).
MAX_IN_FLIGHT = 1000


def in_flight_bound(offsets: np.ndarray, floor: int) -> int:
    """Requests a user may need in flight at once: the most of its planned sends within any
    ``IN_FLIGHT_S`` of each other, at least ``floor``, at most ``MAX_IN_FLIGHT``.

    An organisation sends on its schedule whether or not its earlier requests have been answered
    (the open model). A pool smaller than that made sends wait for a free slot: 5 users at 50
    requests a second (100 sends in 10 s each) ran 12 times their duration, send lateness p99
    19.6 s."""
    if len(offsets) == 0:
        return floor
    within = np.searchsorted(offsets, offsets + IN_FLIGHT_S, side="left") - np.arange(len(offsets))
    return int(min(MAX_IN_FLIGHT, max(floor, int(within.max()))))


@dataclass(frozen=True)
class Plan:
    """The whole load test: the scenario, the users and (lazily) their schedules."""

    config: LoadConfig
    loaded: Loaded
    users: tuple[UserSpec, ...]
    _schedules: dict[int, Schedule] = field(default_factory=dict, repr=False)
    _curves: dict[float, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def scenario(self) -> Scenario:
        return self.loaded.scenario

    @cached_property
    def hours(self) -> int:
        w = self.scenario.window
        return window_hours(w.start, w.end)

    @property
    def step_wall_s(self) -> float:
        """Wall seconds per scenario hour."""
        return self.config.duration_s / (self.scenario.window.hours)

    def scenario_at(self, wall: float) -> dt.datetime:
        w = self.scenario.window
        return w.start + dt.timedelta(seconds=(wall - self.config.epoch) * self.speedup)

    def wall_at(self, when: dt.datetime) -> float:
        return self.config.epoch + (when - self.scenario.window.start).total_seconds() / self.speedup

    @property
    def speedup(self) -> float:
        """Scenario seconds per wall second (the clock compression factor)."""
        return self.scenario.window.hours * 3600 / self.config.duration_s

    def rate_curve(self, user: UserSpec) -> np.ndarray:
        """The user's target rate (requests per wall second) in each scenario hour."""
        offset = self.scenario.region(user.org.region).utc_offset
        curve = self._curves.get(offset)
        if curve is None:
            start = self.scenario.window.start
            curve = self._curves[offset] = hourly_intensity(self.scenario.traffic, offset, start,
                                                            self.hours)
        return np.asarray(self.config.rate * user.share * curve, dtype=float)

    def target_curve(self) -> np.ndarray:
        """The aggregate target rate per scenario hour (every organisation active)."""
        return np.sum([self.rate_curve(u) for u in self.users], axis=0)

    def schedule(self, user: UserSpec) -> Schedule:
        cached = self._schedules.get(user.index)
        if cached is None:
            cached = self._schedules[user.index] = self._draw(user)
        return cached

    def _draw(self, user: UserSpec) -> Schedule:
        s = self.scenario
        seg = s.segment(user.org.segment)
        rng = np.random.default_rng([self.config.seed, 7, user.index])
        offsets = traffic.arrival_times(self.rate_curve(user), self.step_wall_s, rng)
        offsets = offsets[offsets < self.config.duration_s]
        n = len(offsets)
        tin = _tokens(sample(seg.tokens_in, rng, n), self.config.max_tokens_in)
        tout = _tokens(sample(seg.tokens_out, rng, n), self.config.max_tokens_out)
        stream = rng.random(n) < seg.stream_share
        # every request asks for the organisation's main model, as in the simulator
        return Schedule(offsets, (user.model,) * n, tin.astype(np.int64),
                        tout.astype(np.int64), stream)

    def source_ips(self, geo: Geo) -> dict[int, str]:
        """One address of each user's region (by user index), on an ISP network: traffic from a
        hosting network is what the incumbent's detection reads as a relay
        (``gateway.enforcement.RelayMemory``), and in the model an organisation's own requests
        are not relayed — a home address in a datacentre would start its detection clock at its
        first direct request, long before it chose a relay."""
        return {u.index: geo.sample_ips(u.org.region, 1,
                                        np.random.default_rng([self.config.seed, 13, u.index]),
                                        isp=True)[0]
                for u in self.users}

    def base_url(self, region: str, path: str, host: str) -> str:
        """Where a request of ``region`` by ``path`` goes: its WAN path, else the relay or host."""
        wan = dict(self.config.wan)
        url = wan.get(f"{region}/{path}") or (self.config.relay_url if path == "relay" else "")
        return (url or host).rstrip("/")

    # ------------------------------------------------------------ what the run can judge

    def precision(self) -> list[RegionPrecision]:
        """Per region: users, planned requests after the incumbent's first block, and the
        precision (95 % half-width, worst case) of the block share and revenue share measured.

        An organisation's requests rise and fall together (it is blocked, allow-listed, migrates
        or circumvents as a whole), so the effective sample is of organisations, weighted by
        their requests: n_eff = (sum x)^2 / sum x^2 over the region's users' planned requests x
        after the block (for the revenue share, their planned revenue at the incumbent's prices).
        A share p measured on clusters has a standard error sqrt(p(1-p)/n_eff); at the worst
        case p = 1/2 the 95 % half-width is 0.98 / sqrt(n_eff).
        """
        s = self.scenario
        block_at = first_denial(s, s.incumbent.name)
        cut = self.wall_at(block_at) - self.config.epoch if block_at else self.config.duration_s
        prices = {m.name: (m.price_in, m.price_out) for m in s.incumbent.models}
        by: dict[str, list[tuple[float, float]]] = {}
        for u in self.users:
            sch = self.schedule(u)
            after = sch.offsets >= cut
            revenue = sum(prices[m][0] * ti + prices[m][1] * to
                          for m, ti, to, a in zip(sch.models, sch.tokens_in.tolist(),
                                                  sch.tokens_out.tolist(), after.tolist(),
                                                  strict=True) if a) / 1e6
            by.setdefault(u.org.region, []).append((float(after.sum()), revenue))
        out = []
        for region in (r.code for r in s.regions):
            rows = by.get(region, [])
            out.append(RegionPrecision(region=region, users=len(rows),
                                       requests_after=int(sum(x for x, _ in rows)),
                                       block_share_pm=_half_width([x for x, _ in rows]),
                                       revenue_share_pm=_half_width([r for _, r in rows])))
        return out

    # ------------------------------------------------------------ the paired simulation

    def sample(self, scenario_sha256: str, credit_scales: Mapping[str, float]) -> Sample:
        """The users as the paired simulation replays them (``scenarios.sample``): each one's
        requests per scenario hour at the curve's mean, ``rate × share × step_wall_s``, and the
        credit scale its gateway applies (``loadtests.credits``)."""
        per_hour = self.config.rate * self.step_wall_s
        return Sample(seed=self.config.seed, scenario_sha256=scenario_sha256,
                      wall_s_per_scenario_hour=self.step_wall_s,
                      relay_available=bool(self.config.relay_url),
                      orgs=tuple(SampledOrg(u.org.id, u.org.region, u.org.segment, u.weight,
                                            per_hour * u.share, credit_scales.get(u.org.id, 1.0),
                                            u.model) for u in self.users))

    # ------------------------------------------------------------ scale

    def scale(self) -> dict[str, float | int | str]:
        """How the load test relates to the scenario's full-size world (for summary.json)."""
        population = build_population(self.scenario, self.config.seed)
        full_rph = sum(o.requests_per_hour for o in population)
        lt_rph = self.config.rate * self.step_wall_s  # load-test requests per scenario hour
        return {
            "users": len(self.users),
            "organisations": len(population),
            "orgs_per_user": len(population) / len(self.users),
            "target_rate_rps": self.config.rate,
            "population_requests_per_hour": full_rph,
            "loadtest_requests_per_scenario_hour": lt_rph,
            "requests_scale": lt_rph / full_rph if full_rph else 0.0,
            "speedup": self.speedup,
            "wall_s_per_scenario_day": 24 * self.step_wall_s,
            "max_tokens_in": self.config.max_tokens_in,
            "max_tokens_out": self.config.max_tokens_out,
            "note": "requests, tokens and USD are load-test counts; divide by requests_scale for "
                    "the full-size world. orgs rows are weighted: each user stands for "
                    "orgs_per_user organisations of its region x segment stratum.",
        }


@dataclass(frozen=True)
class RegionPrecision:
    """What a run can judge in one region (see :meth:`Plan.precision`)."""

    region: str
    users: int
    requests_after: int
    block_share_pm: float | None  # 95 % half-width in share units; None: nothing to judge
    revenue_share_pm: float | None


def _half_width(values: list[float]) -> float | None:
    """0.98 / sqrt(n_eff): the worst-case 95 % half-width of a share measured on clusters."""
    total = sum(values)
    squares = sum(v * v for v in values)
    if total <= 0 or squares <= 0:
        return None
    return 0.98 / math.sqrt(total * total / squares)


def _tokens(drawn: np.ndarray, cap: int) -> np.ndarray:
    """Whole tokens, at least 1 (an API request asks for one at least), capped when ``cap`` > 0."""
    whole = np.maximum(np.rint(drawn), 1)
    return np.minimum(whole, cap) if cap > 0 else whole


def build_plan(config: LoadConfig, loaded: Loaded | None = None) -> Plan:
    """The plan for ``config`` (loads the scenario unless ``loaded`` is given)."""
    loaded = loaded or load(config.scenario, config.overrides)
    return Plan(config, loaded, tuple(sample_users(loaded.scenario, config.users, config.seed)))
