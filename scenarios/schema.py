"""The scenario schema: validated, immutable value objects built from a scenario file.

One module, one source of truth. The simulator, the gateway, the load tests and the reports all
read a :class:`Scenario`; none keeps a second copy of any rule. Field-level rules (types, ranges)
live on the fields; rules that relate fields to each other (dates in order, shares summing to one,
references that must exist) live in :func:`semantic_problems`, which reports every problem at
once with the dotted path of the field at fault.

Units are in the field names: ``*_ms`` milliseconds, ``*_s`` seconds, ``*_days`` days, prices in
USD per 1M tokens, rates per hour, percentages 0–100, fractions and probabilities 0–1.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from scenarios.countries import region_item_error
from scenarios.distributions import Constant, Distribution, NonNegative, Positive, Rate

# NaN and infinity are refused everywhere (1e400 in YAML reads as infinity).
_FROZEN = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)
_SLUG = r"^[a-z0-9][a-z0-9_.-]*$"

Action = Literal["allow", "warn", "throttle", "block"]
Preset = Literal["openai_403", "google_400_location", "http_451", "cloudflare_1009", "openai_429"]
OrgState = Literal["direct", "circumventing", "migrating", "migrated", "churned"]


def _to_utc(value: Any) -> Any:
    """Dates become midnight UTC; naive datetimes are read as UTC; aware ones are converted."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return dt.datetime.fromisoformat(value.strip()).replace(tzinfo=dt.UTC)
    return value


def _after_utc(value: dt.datetime) -> dt.datetime:
    """Whatever pydantic parsed (an ISO string with a time, a number) comes out aware, in UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


UtcDatetime = Annotated[dt.datetime, BeforeValidator(_to_utc), AfterValidator(_after_utc)]
Slug = Annotated[str, Field(pattern=_SLUG, min_length=1, max_length=64)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]


def _region_item(value: str) -> str:
    problem = region_item_error(value)
    if problem:
        raise ValueError(problem)
    return value


def _iso_country(v: str) -> str:
    problem = region_item_error(v)
    if problem or len(v) != 2:
        raise ValueError(problem or f"{v!r} is not an ISO 3166-1 alpha-2 code")
    return v


RegionItem = Annotated[str, BeforeValidator(lambda v: v if not isinstance(v, str) else v.strip())]
CountryCode = Annotated[str, Field(min_length=2, max_length=2)]


class _Model(BaseModel):
    model_config = _FROZEN


# ---------------------------------------------------------------- window and regions


class Window(_Model):
    """The scenario's time span (UTC) and the width of its output bins."""

    start: UtcDatetime
    end: UtcDatetime
    bin: Literal["hour", "day"] = "day"

    @property
    def bin_seconds(self) -> int:
        return 3600 if self.bin == "hour" else 86400

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


class PathRtt(_Model):
    """Network round trip from a region to the providers, by path."""

    direct: NonNegative = Constant(dist="constant", value=0.0)
    relay: NonNegative = Constant(dist="constant", value=0.0)


class Region(_Model):
    """A client region: its developer organisations using the incumbent at the start."""

    code: CountryCode
    organisations: int = Field(ge=0)
    utc_offset: float = Field(ge=-12, le=14)
    rtt_ms: PathRtt = PathRtt()
    note: str = ""

    @field_validator("code")
    @classmethod
    def _iso_code(cls, v: str) -> str:
        return _iso_country(v)


# ---------------------------------------------------------------- segments


class RetryPolicy(_Model):
    """What a client library does with a failed request (the openai SDK: 2 retries on 408/409/429/5xx)."""

    statuses: tuple[int, ...] = (408, 409, 429, 500, 502, 503, 504)
    max_retries: int = Field(default=2, ge=0, le=20)
    backoff_s: NonNegative = Constant(dist="constant", value=1.0)

    @field_validator("statuses")
    @classmethod
    def _http_statuses(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [s for s in v if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"{bad[0]} is not an HTTP status code (100-599)")
        return v


class Propensity(_Model):
    """Alternative-specific constants a segment adds to each choice's utility (logit scale)."""

    wait: float = 0.0
    circumvent: float = 0.0
    migrate: float = 0.0
    churn: float = 0.0


class Segment(_Model):
    """A kind of organisation (enterprise, startup, hobbyist...) and how it uses the API."""

    name: Slug
    share: dict[str, Fraction]
    requests_per_hour: Rate
    tokens_in: NonNegative
    tokens_out: NonNegative
    model_mix: dict[str, Fraction]
    stream_share: Fraction = 0.0
    retry: RetryPolicy = RetryPolicy()
    migration_days: NonNegative = Constant(dist="constant", value=7.0)
    propensity: Propensity = Propensity()


# ---------------------------------------------------------------- providers


class Model(_Model):
    """A model a provider sells, with its list price (USD per 1M tokens) and a quality score."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    # USD per 1M tokens; the dearest list price of 2024 was $600 (o1-pro's output), so 10,000
    # bounds a typo without bounding any real price
    price_in: float = Field(ge=0, le=10_000)
    price_out: float = Field(ge=0, le=10_000)
    quality: float = Field(default=1.0, ge=0, le=1)
    available_from: UtcDatetime | None = None
    #: The endpoint that sells it: chat (chat completions and the Responses API), legacy
    #: ``completion``, ``embedding`` (priced by input tokens only: ``price_out`` must be 0), or
    #: ``moderation`` (no usage: free).
    kind: Literal["chat", "completion", "embedding", "moderation"] = "chat"


class Latency(_Model):
    """Service time: time to first token, then output tokens at a rate."""

    ttft_ms: NonNegative
    tokens_per_s: Positive


class Capacity(_Model):
    """Concurrent requests served; a queue beyond that; 429 beyond the queue limit."""

    concurrency: int = Field(ge=1)
    queue_limit: int = Field(ge=0)


class Incentive(_Model):
    """Free tokens a provider gives each migrating organisation, until a deadline."""

    free_tokens: int = Field(ge=0)
    deadline: UtcDatetime | None = None
    note: str = ""


class Faults(_Model):
    """Fault injection for the mock upstream (Toxiproxy's kinds). Rates are per request."""

    error_rate: Fraction = 0.0
    error_status: int = Field(default=500, ge=400, le=599)
    spike_rate: Fraction = 0.0
    spike_ms: NonNegative = Constant(dist="constant", value=0.0)
    reset_rate: Fraction = 0.0
    stall_rate: Fraction = 0.0
    stall_s: float = Field(default=30.0, ge=0)


class Provider(_Model):
    """A model provider: the incumbent that blocks, or an alternative courting the migrants."""

    name: Slug
    label: str = ""
    incumbent: bool = False
    models: tuple[Model, ...] = Field(min_length=1)
    #: Models of the other endpoints (embeddings, legacy completions), kept apart from ``models``
    #: so the chat traffic the simulator and the load test model is unchanged by them.
    other_models: tuple[Model, ...] = ()
    substitutes: dict[str, str] = {}
    latency: Latency
    capacity: Capacity
    serves: tuple[RegionItem, ...] = ("all",)
    incentive: Incentive | None = None
    faults: Faults = Faults()

    @field_validator("serves")
    @classmethod
    def _serves_regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_region_item(x) for x in v)

    def model(self, name: str) -> Model | None:
        return next((m for m in self.models if m.name == name), None)

    def substitute_for(self, incumbent_model: str) -> Model:
        """The model of this provider a migrant uses in place of ``incumbent_model``."""
        own = self.model(incumbent_model)
        if own is not None:
            return own
        mapped = self.substitutes.get(incumbent_model)
        return self.model(mapped) if mapped else self.models[0]  # type: ignore[return-value]


# ---------------------------------------------------------------- policy


class Response(_Model):
    """The HTTP response an enforcement sends: a preset, or a custom status/headers/body."""

    preset: Preset | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    headers: dict[str, str] = {}
    body: str | None = None


class AllowList(_Model):
    """Organisations or segments a stage does not apply to (the enterprise path)."""

    orgs: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()


class Stage(_Model):
    """One step of a provider's rollout; the latest started stage that matches a request wins."""

    name: Slug
    start: UtcDatetime
    end: UtcDatetime | None = None
    regions: tuple[RegionItem, ...] = Field(min_length=1)
    action: Action
    percent: Percent = 100.0
    salt: str | None = None
    response: Response | None = None
    allow_list: AllowList = AllowList()
    retry_after_s: int = Field(default=60, ge=0)
    throttle_fraction: Fraction = 1.0
    message: str = ""

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_region_item(x) for x in v)


class Detection(_Model):
    """Detection of circumvention: each day a relayed organisation is caught with ``per_day``."""

    per_day: Fraction
    signal: Literal["hosting_asn"] = "hosting_asn"
    start: UtcDatetime | None = None
    response: Response | None = None


class ProviderPolicy(_Model):
    stages: tuple[Stage, ...] = ()
    detection: Detection | None = None
    salt: str | None = None


class FailoverRule(_Model):
    """When ``from_`` refuses or fails an organisation, the gateway may route it to ``to``."""

    from_: Slug = Field(alias="from")
    to: tuple[Slug, ...] = Field(min_length=1)
    when: tuple[Literal["block", "error"], ...] = ("block", "error")
    segments: tuple[Slug, ...] = ()
    orgs: tuple[str, ...] = ()


class Routing(_Model):
    failover: tuple[FailoverRule, ...] = ()


# ---------------------------------------------------------------- behaviour


class Bass(_Model):
    """Bass diffusion per day: innovation ``p`` and imitation ``q``."""

    p: float = Field(ge=0, le=1)
    q: float = Field(ge=0, le=10)


class Announcement(_Model):
    """The incumbent tells affected organisations what is coming; some migrate in anticipation."""

    provider: Slug
    at: UtcDatetime
    anticipation: Bass = Bass(p=0.0, q=0.0)


class ChoiceCoefficients(_Model):
    """Multinomial-logit utility coefficients for the choice an organisation makes when blocked.

    Utilities (each plus the segment's propensity constant; see scenarios.behaviour.utilities):
    wait = asc_wait; churn = asc_churn;
    circumvent = asc_circumvent + price·markup + latency·relay_extra_s;
    migrate to k = asc_migrate + price·(cost_k / cost_incumbent − 1) + quality·(q_k − q_incumbent)
                   + latency·(latency_k − latency_incumbent)_s + incentive·log1p(free_Mtokens_k)
                   + switching_cost·migration_days + imitation·share_already_at_k,
    cost = expected USD per request of the segment's model mix (substitutes applied), quality the
    mix-weighted model quality, latency = typical TTFT + mean output tokens / typical tokens/s.
    """

    asc_wait: float = 0.0
    asc_circumvent: float = 0.0
    asc_migrate: float = 0.0
    asc_churn: float = -2.0
    price: float = -1.0
    quality: float = 2.0
    latency: float = -0.5
    incentive: float = 0.3
    switching_cost: float = -0.05
    imitation: float = 2.0


class Relay(_Model):
    """The circumvention path: a relay in a supported country, slower and marked up."""

    extra_latency_ms: NonNegative
    markup: float = Field(ge=0, le=10)
    country: CountryCode = "SG"
    hosting: bool = True

    @field_validator("country")
    @classmethod
    def _iso_code(cls, v: str) -> str:
        return _iso_country(v)


class Behaviour(_Model):
    announcement: Announcement | None = None
    choice: ChoiceCoefficients = ChoiceCoefficients()
    relay: Relay
    wait_days: NonNegative = Constant(dist="constant", value=1.0)


#: Relative intensity by local hour 0..23: developer APIs follow the working day, with a night
#: floor from batch jobs. ASSUMPTION: no public diurnal profile of API traffic exists.
DEFAULT_DIURNAL = (0.35, 0.28, 0.24, 0.22, 0.22, 0.26, 0.38, 0.60, 0.90, 1.25, 1.45, 1.50,
                   1.40, 1.45, 1.55, 1.55, 1.50, 1.35, 1.15, 1.00, 0.90, 0.80, 0.65, 0.48)
#: Relative intensity Monday..Sunday: weekends about a third lower. ASSUMPTION, as above.
DEFAULT_WEEKLY = (1.10, 1.12, 1.12, 1.10, 1.06, 0.77, 0.73)


class TrafficPattern(_Model):
    """When requests arrive: relative intensity by local hour and by local weekday.

    Each shape is normalised to a mean of 1, so a segment's ``requests_per_hour`` is the average
    rate over a whole week; both engines read the curve through :mod:`scenarios.traffic`.
    """

    diurnal: tuple[Annotated[float, Field(ge=0)], ...] = Field(DEFAULT_DIURNAL, min_length=24,
                                                                 max_length=24)
    weekly: tuple[Annotated[float, Field(ge=0)], ...] = Field(DEFAULT_WEEKLY, min_length=7,
                                                                max_length=7)

    @field_validator("diurnal", "weekly")
    @classmethod
    def _not_all_zero(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not any(v):
            raise ValueError("needs at least one value above 0")
        return v


class SloThreshold(_Model):
    """A k6-style threshold on one region's requests by one path, in true time (from the intended
    send instant): time to first token p99 of streamed requests, total latency p99 of all served."""

    region: RegionItem
    path: Literal["direct", "relay"] = "direct"
    ttft_p99_ms: float | None = Field(default=None, gt=0)
    latency_p99_ms: float | None = Field(default=None, gt=0)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        return _iso_country(v)


class Slos(_Model):
    """Load-test thresholds (like k6 thresholds): for the supported ``regions`` a p99 latency and
    an error rate; ``thresholds`` per region and path (TTFT p99 of streams, total p99), judged
    when at least ``min_requests`` requests of the group were served."""

    p99_latency_ms: float = Field(gt=0)
    error_rate: Fraction
    regions: tuple[RegionItem, ...] = ()
    thresholds: tuple[SloThreshold, ...] = ()
    min_requests: int = Field(default=100, ge=1)

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_region_item(x) for x in v)


# ---------------------------------------------------------------- scenario


class Uncertain(_Model):
    """An assumed parameter given as a distribution: the simulator draws it afresh for every
    replication (so the bands cover it); everything else reads the value written at ``path``."""

    path: str = Field(min_length=1)   # a field path as --set takes it: providers[1].capacity.concurrency
    dist: Distribution
    reason: str = ""


class Scenario(_Model):
    """A region-blocking rollout and the world it happens in."""

    name: Slug
    description: str = ""
    version: Literal[1] = 1
    window: Window
    regions: tuple[Region, ...] = Field(min_length=1)
    segments: tuple[Segment, ...] = Field(min_length=1)
    providers: tuple[Provider, ...] = Field(min_length=1)
    policy: dict[str, ProviderPolicy] = {}
    routing: Routing = Routing()
    behaviour: Behaviour
    slos: Slos
    traffic: TrafficPattern = TrafficPattern()
    #: assumed parameters drawn per replication (additive: absent means none)
    uncertain: tuple[Uncertain, ...] = ()

    def provider(self, name: str) -> Provider:
        return next(p for p in self.providers if p.name == name)

    def region(self, code: str) -> Region:
        return next(r for r in self.regions if r.code == code)

    def segment(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)

    @property
    def incumbent(self) -> Provider:
        return next(p for p in self.providers if p.incumbent)

    @property
    def alternatives(self) -> tuple[Provider, ...]:
        return tuple(p for p in self.providers if not p.incumbent)


# ---------------------------------------------------------------- cross-field rules

SHARE_TOLERANCE = 1e-6

Loc = tuple[str | int, ...]


def semantic_problems(s: Scenario) -> list[tuple[Loc, str]]:
    """Every rule that relates fields to each other, as (location, message) pairs."""
    checks = (_window_rules, _region_rules, _segment_rules, _provider_rules, _policy_rules,
              _routing_rules, _behaviour_rules)
    return [problem for check in checks for problem in check(s)]


#: The longest window: both engines work hour by hour (a window of 2,000 years was hours of
#: work and gigabytes before it failed); a rollout rehearsal spans months.
MAX_WINDOW_DAYS = 1096
#: The most organisations a scenario may hold. The simulator gives each its own life: a million
#: in one region took 171 s and 3.3 GB for one replication on a 2-core machine (2026-12-03).
MAX_ORGANISATIONS = 1_000_000


def _window_rules(s: Scenario) -> list[tuple[Loc, str]]:
    if s.window.end <= s.window.start:
        return [(("window", "end"), f"must be after window.start ({s.window.start.isoformat()})")]
    days = (s.window.end - s.window.start).total_seconds() / 86400
    if days > MAX_WINDOW_DAYS:
        return [(("window", "end"), f"the window is {days:,.0f} days long; at most "
                 f"{MAX_WINDOW_DAYS:,} (three years) is simulated")]
    return []


def _duplicates(names: list[str], loc: Loc, what: str) -> list[tuple[Loc, str]]:
    seen: set[str] = set()
    out: list[tuple[Loc, str]] = []
    for i, n in enumerate(names):
        if n in seen:
            out.append(((*loc, i, what), f"duplicate {what} {n!r}"))
        seen.add(n)
    return out


def _region_rules(s: Scenario) -> list[tuple[Loc, str]]:
    out = _duplicates([r.code for r in s.regions], ("regions",), "code")
    total = sum(r.organisations for r in s.regions)
    if total > MAX_ORGANISATIONS:
        biggest = max(range(len(s.regions)), key=lambda i: s.regions[i].organisations)
        out.append((("regions", biggest, "organisations"), f"the regions hold {total:,} "
                    f"organisations; at most {MAX_ORGANISATIONS:,} are simulated (each has its own "
                    "life in the model: use --scale, or fewer, larger organisations)"))
    codes = {r.code for r in s.regions}
    for i, t in enumerate(s.slos.thresholds):
        if t.region not in codes:
            out.append((("slos", "thresholds", i, "region"), f"unknown region {t.region!r}"))
        if t.ttft_p99_ms is None and t.latency_p99_ms is None:
            out.append((("slos", "thresholds", i),
                        "needs ttft_p99_ms or latency_p99_ms (a threshold with neither checks nothing)"))
    return out


def _segment_rules(s: Scenario) -> list[tuple[Loc, str]]:
    out = _duplicates([g.name for g in s.segments], ("segments",), "name")
    codes = {r.code for r in s.regions}
    incumbent_models = {m.name for p in s.providers if p.incumbent for m in p.models}
    for i, seg in enumerate(s.segments):
        for code in seg.share:
            if code not in codes:
                out.append((("segments", i, "share", code), f"unknown region {code!r}"))
        for model in seg.model_mix:
            if incumbent_models and model not in incumbent_models:
                known = ", ".join(sorted(incumbent_models))
                out.append((("segments", i, "model_mix", model),
                             f"unknown model {model!r} (the incumbent sells: {known})"))
        total = sum(seg.model_mix.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            out.append((("segments", i, "model_mix"), f"shares must sum to 1 (they sum to {total:.10g})"))
    for r in s.regions:
        total = sum(seg.share.get(r.code, 0.0) for seg in s.segments)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            out.append((("segments",),
                        f"shares for region {r.code} must sum to 1 over segments (they sum to {total:.10g})"))
    return out


def _provider_rules(s: Scenario) -> list[tuple[Loc, str]]:
    out = _duplicates([p.name for p in s.providers], ("providers",), "name")
    incumbents = [i for i, p in enumerate(s.providers) if p.incumbent]
    if len(incumbents) != 1:
        out.append((("providers",), f"exactly one provider must be the incumbent (found {len(incumbents)})"))
    for i, p in enumerate(s.providers):
        out += _duplicates([m.name for m in p.models], ("providers", i, "models"), "name")
        out += _model_kind_rules(p, i)
        for src, dst in p.substitutes.items():
            if p.model(dst) is None:
                out.append((("providers", i, "substitutes", src), f"{p.name} has no model {dst!r}"))
        if p.incentive and p.incentive.deadline and p.incentive.deadline < s.window.start:
            out.append((("providers", i, "incentive", "deadline"), "is before window.start"))
    return out


def _model_kind_rules(p: Provider, i: int) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    chat = {m.name for m in p.models}
    for j, m in enumerate(p.models):
        if m.kind != "chat":
            out.append((("providers", i, "models", j, "kind"),
                        f"{m.kind!r} models belong in other_models (models are chat models)"))
    for j, m in enumerate(p.other_models):
        where: Loc = ("providers", i, "other_models", j)
        if m.kind == "chat":
            out.append(((*where, "kind"), "chat models belong in models"))
        if m.kind == "embedding" and m.price_out:
            out.append(((*where, "price_out"), "must be 0: embeddings are priced by input tokens"))
        if m.name in chat:
            out.append(((*where, "name"), f"{m.name!r} is also in models"))
    return out


def _policy_rules(s: Scenario) -> list[tuple[Loc, str]]:
    names = {p.name for p in s.providers}
    segments = {g.name for g in s.segments}
    out: list[tuple[Loc, str]] = []
    for prov, pol in s.policy.items():
        if prov not in names:
            out.append((("policy", prov), f"unknown provider {prov!r}"))
        out += _duplicates([st.name for st in pol.stages], ("policy", prov, "stages"), "name")
        for j, st in enumerate(pol.stages):
            loc: Loc = ("policy", prov, "stages", j)
            if j > 0 and st.start <= pol.stages[j - 1].start:
                out.append(((*loc, "start"), f"must be after stages[{j - 1}].start"))
            if st.end is not None and st.end <= st.start:
                out.append(((*loc, "end"), "must be after start"))
            for k, seg in enumerate(st.allow_list.segments):
                if seg not in segments:
                    out.append(((*loc, "allow_list", "segments", k), f"unknown segment {seg!r}"))
            if st.response is not None:
                out += [((*loc, "response"), m) for m in _response_problems(st.response)]
        if pol.detection and pol.detection.response:
            out += [(("policy", prov, "detection", "response"), m)
                    for m in _response_problems(pol.detection.response)]
    return out


def _response_problems(r: Response) -> list[str]:
    if r.preset is None and (r.status is None or r.body is None):
        return ["needs a preset, or both status and body"]
    if r.preset is not None and (r.status is not None or r.body is not None):
        return ["give either a preset or a custom status/body, not both"]
    return []


def _routing_rules(s: Scenario) -> list[tuple[Loc, str]]:
    names = {p.name for p in s.providers}
    segments = {g.name for g in s.segments}
    out: list[tuple[Loc, str]] = []
    for i, rule in enumerate(s.routing.failover):
        loc: Loc = ("routing", "failover", i)
        if rule.from_ not in names:
            out.append(((*loc, "from"), f"unknown provider {rule.from_!r}"))
        for k, to in enumerate(rule.to):
            if to not in names:
                out.append(((*loc, "to", k), f"unknown provider {to!r}"))
            elif to == rule.from_:
                out.append(((*loc, "to", k), "cannot fail over to the same provider"))
        for k, seg in enumerate(rule.segments):
            if seg not in segments:
                out.append(((*loc, "segments", k), f"unknown segment {seg!r}"))
    return out


def _behaviour_rules(s: Scenario) -> list[tuple[Loc, str]]:
    ann = s.behaviour.announcement
    out: list[tuple[Loc, str]] = []
    if ann is not None:
        if ann.provider not in {p.name for p in s.providers}:
            out.append((("behaviour", "announcement", "provider"), f"unknown provider {ann.provider!r}"))
        if not s.window.start <= ann.at <= s.window.end:
            out.append((("behaviour", "announcement", "at"), "must lie inside the window"))
    return out
