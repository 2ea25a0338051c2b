"""FaultSettings validation and merging, and per-request fault plans against theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.faults import FaultSettings, injected_error_body, plan_fault
from gateway.mock_upstream_errors import FaultSettingsError
from scenarios.distributions import Constant
from scenarios.schema import Faults


def test_built_from_the_scenario_faults() -> None:
    faults = Faults(error_rate=0.1, error_status=503, spike_rate=0.2,
                    spike_ms=Constant(dist="constant", value=250), stall_s=4)
    settings = FaultSettings.from_scenario(faults)
    assert settings == FaultSettings(error_rate=0.1, error_status=503, spike_rate=0.2,
                                     spike_ms=250, stall_s=4)
    assert settings.active


def test_merge_replaces_only_the_given_fields() -> None:
    base = FaultSettings(error_rate=0.1, stall_s=5)
    merged = base.merged({"reset_rate": 0.5, "spike_ms": {"dist": "uniform", "low": 1, "high": 2}})
    assert merged.to_json() == {
        "error_rate": 0.1, "error_status": 500, "spike_rate": 0.0,
        "spike_ms": {"dist": "uniform", "low": 1.0, "high": 2.0}, "reset_rate": 0.5,
        "stall_rate": 0.0, "stall_s": 5.0}
    assert base.reset_rate == 0.0  # value objects: merging never mutates


@pytest.mark.parametrize(("patch", "param", "match"), [
    ({"error_rate": 1.5}, "error_rate", r"error_rate: Input should be less than or equal to 1 \(got 1.5\)"),
    ({"error_status": 200}, "error_status", "greater than or equal to 400"),
    ({"stall_s": 1e9}, "stall_s", "less than or equal to 3600"),
    ({"spike_ms": {"dist": "lognormal", "median": -1, "sigma": 1}}, "spike_ms.median", "greater than 0"),
    ({"bogus": 1}, "bogus", "unknown field 'bogus'"),
    ({"reset_rate": "often"}, "reset_rate", "valid number"),
])
def test_bad_settings_name_the_field(patch: dict[str, object], param: str, match: str) -> None:
    with pytest.raises(FaultSettingsError, match=match) as info:
        FaultSettings().merged(patch)
    assert info.value.param == param


def test_a_patch_must_be_an_object() -> None:
    with pytest.raises(FaultSettingsError, match="expected a JSON object"):
        FaultSettings().merged([1])  # type: ignore[arg-type]


def test_no_faults_means_no_draw_changes_anything() -> None:
    rng = np.random.default_rng(1)
    assert {plan_fault(FaultSettings(), rng).kind for _ in range(1000)} == {"none"}


def test_precedence_reset_then_stall_then_error() -> None:
    rng = np.random.default_rng(2)
    assert plan_fault(FaultSettings(reset_rate=1, stall_rate=1, error_rate=1), rng).kind == "reset"
    assert plan_fault(FaultSettings(stall_rate=1, error_rate=1), rng).kind == "stall"
    assert plan_fault(FaultSettings(error_rate=1), rng).kind == "error"


def test_rates_match_their_binomial_expectation() -> None:
    """Each kind's frequency is its rate times the chance no earlier kind fired (4-sigma band)."""
    settings = FaultSettings(reset_rate=0.1, stall_rate=0.2, error_rate=0.3, spike_rate=0.25,
                             spike_ms=100)
    rng = np.random.default_rng(42)
    n = 20_000
    plans = [plan_fault(settings, rng) for _ in range(n)]
    expected = {"reset": 0.1, "stall": 0.9 * 0.2, "error": 0.9 * 0.8 * 0.3}
    for kind, p in expected.items():
        observed = sum(plan.kind == kind for plan in plans)
        assert abs(observed - n * p) < 4 * math.sqrt(n * p * (1 - p)), kind
    spikes = [plan.spike_s for plan in plans if plan.spike_s]
    assert set(spikes) == {0.1}
    assert abs(len(spikes) - n * 0.25) < 4 * math.sqrt(n * 0.25 * 0.75)


def test_injected_error_bodies_look_like_the_api() -> None:
    assert injected_error_body(500)["error"]["type"] == "server_error"
    assert injected_error_body(429) == {"error": {"message": "Rate limit reached for requests.",
                                                  "type": "requests", "param": None,
                                                  "code": "rate_limit_exceeded"}}
    assert injected_error_body(418)["error"]["message"] == "Injected fault: HTTP 418."
