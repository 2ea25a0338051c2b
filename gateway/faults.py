"""Fault injection for the mock upstreams: Toxiproxy's kinds as per-request probabilities.

:class:`FaultSettings` is the validated value object, built from a scenario's
``provider.faults`` and merged with runtime ``PUT /admin/faults`` patches. :func:`plan_fault`
turns the settings and a seeded generator into one request's :class:`FaultPlan`.

Per request, four uniforms are drawn in a fixed order, so the fault sequence of a seeded upstream
does not depend on which faults are switched on. Precedence: a connection reset, else a stall,
else an error response; a latency spike is decided independently and only matters when the
request is served. A stall holds the connection for ``stall_s`` and then closes it without a
response (what a client sees when an upstream hangs); the caller divides durations by its time
scale like every other simulated latency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gateway.mock_upstream_errors import FaultSettingsError
from gateway.mock_upstream_wire import error_body
from scenarios.distributions import Constant, Distribution, sample_one
from scenarios.schema import Faults

#: A stall never holds a connection longer than this (seconds, before time scaling).
MAX_STALL_S = 3600.0

FaultKind = Literal["none", "reset", "stall", "error"]


def _number_as_constant(value: Any) -> Any:
    """``spike_ms: 250`` is short for ``{dist: constant, value: 250}``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"dist": "constant", "value": float(value)}
    return value


Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class FaultSettings(BaseModel):
    """One upstream's fault probabilities (per request) and their parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate: Rate = 0.0
    error_status: int = Field(default=500, ge=400, le=599)
    spike_rate: Rate = 0.0
    spike_ms: Annotated[Distribution, BeforeValidator(_number_as_constant)] = Constant(
        dist="constant", value=0.0)
    reset_rate: Rate = 0.0
    stall_rate: Rate = 0.0
    stall_s: float = Field(default=30.0, ge=0.0, le=MAX_STALL_S)

    @classmethod
    def from_scenario(cls, faults: Faults) -> FaultSettings:
        return cls.parse(faults.model_dump(mode="json"), source="scenario")

    @classmethod
    def parse(cls, data: Any, *, source: str = "faults") -> FaultSettings:
        """Validate plain data; raise FaultSettingsError naming the first bad field."""
        if not isinstance(data, dict):
            raise FaultSettingsError(f"{source}: expected a JSON object of fault settings")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _settings_error(exc, source) from None

    def merged(self, patch: Mapping[str, Any]) -> FaultSettings:
        """These settings with the fields of ``patch`` replaced (a runtime PUT)."""
        if not isinstance(patch, Mapping):
            raise FaultSettingsError("faults: expected a JSON object of fault settings")
        return self.parse({**self.to_json(), **patch})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def active(self) -> bool:
        return any((self.error_rate, self.spike_rate, self.reset_rate, self.stall_rate))


def _settings_error(exc: ValidationError, source: str) -> FaultSettingsError:
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err["loc"] if p not in _DIST_TAGS)
    if err["type"] == "extra_forbidden":
        known = ", ".join(FaultSettings.model_fields)
        return FaultSettingsError(f"{source}: unknown field {param!r} (known: {known})", param=param)
    message = str(err["msg"]).removeprefix("Value error, ")
    return FaultSettingsError(f"{source}: {param}: {message} (got {err.get('input')!r})", param=param)


_DIST_TAGS = {"lognormal", "exponential", "constant", "uniform", "pareto", "empirical"}


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What happens to one request: its fault kind and any extra latency (seconds, unscaled)."""

    kind: FaultKind = "none"
    spike_s: float = 0.0


NO_FAULT = FaultPlan()


def plan_fault(settings: FaultSettings, rng: np.random.Generator) -> FaultPlan:
    """Draw one request's fault from ``settings`` with ``rng`` (see the module docstring)."""
    u_reset, u_stall, u_error, u_spike = rng.random(4)
    spike_s = 0.0
    if u_spike < settings.spike_rate:
        spike_s = max(0.0, sample_one(settings.spike_ms, rng)) / 1000.0
    kind: FaultKind = "none"
    if u_reset < settings.reset_rate:
        kind = "reset"
    elif u_stall < settings.stall_rate:
        kind = "stall"
    elif u_error < settings.error_rate:
        kind = "error"
    return FaultPlan(kind=kind, spike_s=spike_s)


# The messages and types the real API sends with these statuses.
_ERRORS: Mapping[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def injected_error_body(status: int) -> dict[str, Any]:
    """The OpenAI-style error body an injected ``status`` is sent with."""
    default_kind = "server_error" if status >= 500 else "invalid_request_error"
    message, kind, code = _ERRORS.get(status, (f"Injected fault: HTTP {status}.", default_kind, None))
    return error_body(message, kind=kind, code=code)
