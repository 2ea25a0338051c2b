"""The market context: what an organisation's choice needs from the whole market, defined once.

Two market-wide quantities enter an organisation's choices (``scenarios.lifecycle``):

- the **imitation share** of provider k in region r at instant t: the organisations of r that
  have *decided* to migrate to k by t (migrating or migrated), divided by the organisations of r
  whose direct traffic is denied at some point in the window (the *affected*; never less than 1);
- the **anticipation hazard** of region r: the Bass hazard ``p + q·F`` per day integrated from the
  announcement, F the share of r's warned organisations that have left in anticipation. A warned
  organisation draws an Exp(1) threshold and leaves when the integrated hazard passes it.

The simulator computes both as its organisations act (:class:`MarketRecorder`, live) and hands
out the record of a run (:class:`MarketContext`). A load test cannot observe a 55,000-organisation
market with a few thousand users, so it takes the context of the full-market simulation of the
same scenario and seed, computed when the plan is made (``market.json`` in its run directory).
Without one (a locustfile run by hand), :meth:`MarketContext.closed_form` stands in: no imitation
and the Bass closed form, i.e. the hazard with F following the Bass curve itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.schema import Scenario


def imitation_share(chosen: Mapping[str, int], affected: int) -> dict[str, float]:
    """The imitation share of each provider from counts of decisions (the one formula)."""
    n = max(affected, 1)
    return {k: v / n for k, v in chosen.items()}


@dataclass
class _RegionRecord:
    affected: int = 0
    #: decisions to migrate, in time order: (hour, provider)
    choices: list[tuple[float, str]] = field(default_factory=list)
    #: integrated anticipation hazard: (hour, H) steps, H non-decreasing
    hazard: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class MarketContext:
    """The market of one run, as hours from the window start (see the module docstring)."""

    start: dt.datetime
    regions: Mapping[str, _RegionRecord]
    #: the closed-form stand-in (no record): Bass (p, q) and the announcement hour
    closed: tuple[float, float, float] | None = None
    _index: dict[str, dict[str, list[float]]] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------ what a choice asks

    def shares(self, region: str, at: dt.datetime) -> dict[str, float]:
        """Imitation share of each provider in ``region`` at ``at`` (decisions at or before it)."""
        rec = self.regions.get(region)
        if rec is None or not rec.choices:
            return {}
        h = self._hours(at)
        times = self._times_by_provider(region)
        counts = {k: n for k, ts in times.items() if (n := bisect_right(ts, h))}
        return imitation_share(counts, rec.affected)

    def _times_by_provider(self, region: str) -> dict[str, list[float]]:
        hit = self._index.get(region)
        if hit is None:
            hit = self._index[region] = {}
            for t, k in self.regions[region].choices:
                hit.setdefault(k, []).append(t)
            for ts in hit.values():
                ts.sort()
        return hit

    def anticipation_at(self, region: str, threshold: float) -> dt.datetime | None:
        """When ``region``'s integrated anticipation hazard first reaches ``threshold`` (None: never)."""
        if self.closed is not None:
            p, q, ann_h = self.closed
            # H(t) = -ln(1 - F(t)) for the Bass curve: passes the Exp(1) threshold where F = 1 - e^-E
            days = bass_days(p, q, 1.0 - math.exp(-threshold))
            return None if math.isinf(days) else self._at(ann_h + 24.0 * days)
        rec = self.regions.get(region)
        if rec is None:
            return None
        for t, h in rec.hazard:
            if h >= threshold:
                return self._at(t)
        return None

    # ------------------------------------------------------------ building and storing

    @classmethod
    def closed_form(cls, s: Scenario) -> MarketContext:
        ann = s.behaviour.announcement
        start = s.window.start
        if ann is None or ann.provider != s.incumbent.name:
            return cls(start=start, regions={})
        ann_h = (ann.at - start).total_seconds() / 3600.0
        return cls(start=start, regions={}, closed=(ann.anticipation.p, ann.anticipation.q, ann_h))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "closed": list(self.closed) if self.closed else None,
                "regions": {r: {"affected": rec.affected, "choices": rec.choices, "hazard": rec.hazard}
                            for r, rec in self.regions.items()}}

    @classmethod
    def from_json(cls, data: Any) -> MarketContext:
        """The context :meth:`to_json` wrote; ValueError naming the field and what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object")
        start = data.get("start")
        try:
            start_at = dt.datetime.fromisoformat(start) if isinstance(start, str) else None
        except ValueError:
            start_at = None
        if start_at is None:
            raise ValueError(f"start: {_shown(start)} is not an ISO-8601 instant" if "start" in data
                             else "start: missing")
        if "regions" not in data:
            raise ValueError("regions: missing")
        raw = data["regions"]
        if not isinstance(raw, Mapping):
            raise ValueError(f"regions: {_shown(raw)} is not an object of region records")
        regions = {str(r): _region(f"regions.{r}", v) for r, v in raw.items()}
        closed = data.get("closed")
        if closed is not None and not (isinstance(closed, list | tuple) and len(closed) == 3
                                       and all(_is_number(x) for x in closed)):
            raise ValueError(f"closed: {_shown(closed)} is not null or [p, q, announcement hour]")
        return cls(start=start_at, regions=regions,
                   closed=(float(closed[0]), float(closed[1]), float(closed[2])) if closed else None)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> MarketContext:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def _hours(self, at: dt.datetime) -> float:
        return (at - self.start).total_seconds() / 3600.0

    def _at(self, hours: float) -> dt.datetime:
        return self.start + dt.timedelta(hours=hours)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _region(where: str, v: Any) -> _RegionRecord:
    """One region's record of market.json: {affected, choices: [[hour, provider]...],
    hazard: [[hour, H]...]} (ValueError naming the field otherwise)."""
    if not isinstance(v, Mapping):
        raise ValueError(f"{where}: {_shown(v)} is not an object {{affected, choices, hazard}}")
    for key in ("affected", "choices", "hazard"):
        if key not in v:
            raise ValueError(f"{where}.{key}: missing")
    affected = v["affected"]
    if not _is_number(affected) or affected != int(affected) or affected < 0:
        raise ValueError(f"{where}.affected: {_shown(affected)} is not a count")
    pairs = {}
    for key, second in (("choices", "provider"), ("hazard", "integrated hazard")):
        items = v[key]
        if not isinstance(items, list):
            raise ValueError(f"{where}.{key}: {_shown(items)} is not a list")
        for i, item in enumerate(items):
            ok = (isinstance(item, list | tuple) and len(item) == 2 and _is_number(item[0])
                  and (isinstance(item[1], str) if key == "choices" else _is_number(item[1])))
            if not ok:
                raise ValueError(f"{where}.{key}[{i}]: {_shown(item)} is not [hour, {second}]")
        pairs[key] = items
    return _RegionRecord(int(affected), [(float(t), str(k)) for t, k in pairs["choices"]],
                         [(float(t), float(h)) for t, h in pairs["hazard"]])


class MarketRecorder:
    """The live market of a simulation: counts as organisations decide, and the record of it."""

    def __init__(self, start: dt.datetime) -> None:
        self.start = start
        self._regions: dict[str, _RegionRecord] = {}
        self._counts: dict[str, dict[str, int]] = {}
        #: the imitation shares of each region since its last decision (read far more often)
        self._shares: dict[str, dict[str, float]] = {}

    def affect(self, region: str, n: int = 1) -> None:
        """``n`` more organisations of ``region`` are denied at some point in the window."""
        self._record(region).affected += n
        self._shares.pop(region, None)

    def chose(self, region: str, provider: str, hours: float) -> None:
        rec = self._regions.get(region)
        if rec is None:
            rec = self._record(region)
        rec.choices.append((hours, provider))
        counts = self._counts.setdefault(region, {})
        n = counts[provider] = counts.get(provider, 0) + 1
        old = self._shares.get(region)
        if old is not None:
            # imitation_share of the new counts: only this provider's share changed (the same
            # division, the keys in the same order), in a new mapping
            new = self._shares[region] = dict(old)
            new[provider] = n / max(rec.affected, 1)

    def hazard(self, region: str, hours: float, integrated: float) -> None:
        self._record(region).hazard.append((hours, integrated))

    def counts(self, region: str) -> Mapping[str, int]:
        return self._counts.get(region, {})

    def affected(self, region: str) -> int:
        rec = self._regions.get(region)
        return rec.affected if rec else 0

    def shares(self, region: str, at: dt.datetime | None = None) -> dict[str, float]:
        """The imitation share now (every decision so far is at or before now); the same mapping
        until the region's next decision (not to be changed by the caller)."""
        hit = self._shares.get(region)
        if hit is None:
            hit = self._shares[region] = imitation_share(self.counts(region), self.affected(region))
        return hit

    def context(self) -> MarketContext:
        return MarketContext(start=self.start, regions=dict(self._regions))

    def _record(self, region: str) -> _RegionRecord:
        rec = self._regions.get(region)
        if rec is None:
            rec = self._regions[region] = _RegionRecord()
        return rec


def bass_days(p: float, q: float, u: float) -> float:
    """Days t at which the Bass CDF reaches ``u`` (the inverse of ``behaviour.bass_cdf``)."""
    if p <= 0 or u >= 1:
        return math.inf
    return -math.log((1 - u) / (1 + u * q / p)) / (p + q)

