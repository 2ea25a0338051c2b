"""A load test's sample of organisations, as the paired simulation replays it (``sample.json``).

A load test replays a few organisations of the scenario's population (``loadtests.plan``); to
judge it like for like, ``regionblock simulate --sample-of LOADTEST_RUN`` simulates exactly those
organisations: the same ids (hence the same home region, segment and generator,
``lifecycle.org_rng(seed, id)``), the same request rates *in the load test's own units* and the
same weights, inside the full market's context (``market.json`` of the same run). The load test
writes this file beside its ledger; the simulator reads it. Nothing else joins the two engines.

Units. ``requests_per_hour`` is what the organisation's Locust user sends per *scenario* hour when
the traffic curve (``scenarios.traffic.hourly_intensity``, mean 1) is at its mean: the load test's
``rate × share × wall seconds per scenario hour``. The simulator's organisation rate is in the same
unit, so both engines count the same requests, tokens and dollars.
``weight`` is how many organisations of the scenario the user stands for (its region × segment
stratum's size over the users drawn from it); organisation counts are weighted by it in both.
``credit_scale`` is the fraction of a free-token credit its gateway granted it (its tokens over
its organisation's, ``scenarios.ledger.credit_scale``); the paired simulation grants the same.
``model`` is the incumbent model every one of its requests asked for (its main model,
``scenarios.population.main_models``, as in the simulator).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.errors import RunDirError
from scenarios.schema import Scenario

SAMPLE_FILE = "sample.json"
MARKET_FILE = "market.json"
FORMAT = "regionblock-sample"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SampledOrg:
    """One organisation of the sample (one Locust user)."""

    id: str
    region: str
    segment: str
    weight: float
    requests_per_hour: float
    #: the free-token credit's scale the load test's gateway applied (``scenarios.ledger``)
    credit_scale: float = 1.0
    #: the incumbent model its requests asked for (``scenarios.population.main_models``)
    model: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """The load test's organisations and what makes them the load test's: its seed and run."""

    seed: int
    orgs: tuple[SampledOrg, ...]
    #: the resolved scenario the load test ran (``Loaded.sha256``): a paired simulation must run it
    scenario_sha256: str
    #: the load test's compression: wall seconds per scenario hour (for the record only)
    wall_s_per_scenario_hour: float
    #: could its organisations circumvent (a relay to send through)? Not against --host.
    relay_available: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "seed": self.seed,
                "scenario_sha256": self.scenario_sha256,
                "wall_s_per_scenario_hour": self.wall_s_per_scenario_hour,
                "relay_available": self.relay_available,
                "orgs": [[o.id, o.region, o.segment, o.weight, o.requests_per_hour, o.credit_scale,
                          o.model] for o in self.orgs]}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")

    def digest(self) -> str:
        """A stable name of this exact sample (its organisations, rates and seed)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> Sample:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise RunDirError(f"{where}: not a sample this version reads (format "
                              f"{data.get('format')!r}, version {data.get('format_version')!r})")
        orgs = []
        for k, row in enumerate(_field(data, "orgs", list, where)):
            if not (isinstance(row, list) and len(row) == 7):
                raise RunDirError(f"{where}: orgs[{k}]: expected [id, region, segment, weight, "
                                  "requests_per_hour, credit_scale, model]")
            oid, region, segment, weight, rph, scale, model = row
            if not all(isinstance(x, str) and x for x in (oid, region, segment, model)):
                raise RunDirError(f"{where}: orgs[{k}]: id, region, segment and model must be "
                                  "strings")
            if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                       and x >= 0 for x in (weight, rph, scale)):
                raise RunDirError(f"{where}: orgs[{k}]: weight, requests_per_hour and credit_scale "
                                  "must be finite non-negative numbers")
            orgs.append(SampledOrg(oid, region, segment, float(weight), float(rph), float(scale),
                                   model))
        if not orgs:
            raise RunDirError(f"{where}: orgs: empty (a load test with no users)")
        if len({o.id for o in orgs}) != len(orgs):
            raise RunDirError(f"{where}: orgs: an organisation appears twice")
        seed = _field(data, "seed", int, where)
        return cls(seed=seed, orgs=tuple(orgs),
                   relay_available=_field({"relay_available": True, **data}, "relay_available",
                                          bool, where),
                   scenario_sha256=_field(data, "scenario_sha256", str, where),
                   wall_s_per_scenario_hour=float(_field(data, "wall_s_per_scenario_hour",
                                                         (int, float), where)))

    @classmethod
    def read(cls, path: Path) -> Sample:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{path.parent}: no {path.name} (not a load test run, or one made "
                              "before paired simulations existed)") from None
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{path}: unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{path}: expected a JSON object")
        return cls.from_json(data, str(path))

    def check(self, s: Scenario, where: str) -> None:
        """Every organisation's region, segment and model exist in ``s`` (else one line)."""
        regions = {r.code for r in s.regions}
        segments = {g.name for g in s.segments}
        models = {m.name for m in s.incumbent.models}
        for k, o in enumerate(self.orgs):
            if o.model not in models:
                raise RunDirError(f"{where}: orgs[{k}]: model {o.model!r} is not the incumbent's "
                                  f"in scenario {s.name}")
            if o.region not in regions:
                raise RunDirError(f"{where}: orgs[{k}]: region {o.region!r} is not in scenario {s.name}")
            if o.segment not in segments:
                raise RunDirError(f"{where}: orgs[{k}]: segment {o.segment!r} is not in scenario {s.name}")


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RunDirError(f"{where}: {name}: missing or of the wrong type")
    return value
