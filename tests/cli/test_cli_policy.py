"""``regionblock policy explain``: golden outputs, the exact OpenAI 403, JSON, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import REPO, assert_golden, assert_one_line_error, run_cli

Capsys = pytest.CaptureFixture[str]
OPENAI_403 = ('{"error":{"code":"unsupported_country_region_territory","message":"Country, region, '
              'or territory not supported","param":null,"type":"request_forbidden"}}')
EXPLAIN = ("policy", "explain")


def test_block_for_a_chinese_ip(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--ip", "114.114.114.114")
    assert (r.code, r.err) == (0, "")
    assert r.out.splitlines()[0] == "decision  block"
    assert f"          {OPENAI_403}" in r.out.splitlines()
    assert_golden("policy_explain_block.txt", r.out)


def test_allow_for_a_us_ip(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--ip", "8.8.8.8")
    assert (r.code, r.err) == (0, "")
    assert r.out.splitlines()[0] == "decision  allow"
    assert_golden("policy_explain_allow_us.txt", r.out)


def test_allow_before_the_announcement(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-06-01", "--ip", "114.114.114.114")
    assert r.code == 0
    assert_golden("policy_explain_allow_before.txt", r.out)


def test_warn_with_headers(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-06-30", "--country", "hk",
                "--org", "hk-startup-000001")
    assert r.code == 0
    assert_golden("policy_explain_warn.txt", r.out)


def test_allow_listed_segment(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10T08:00:00+08:00", "--country", "CN",
                "--org", "cn-enterprise-azure-000001")
    assert r.code == 0
    assert_golden("policy_explain_allow_listed.txt", r.out)


def test_detected_relay(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "strict-enforcement", "--at", "2024-09-30", "--ip", "8.8.8.8",
                "--org", "cn-startup-000002")
    assert r.code == 0
    assert_golden("policy_explain_detected.txt", r.out)


def test_custom_preset_through_set(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--country", "MO",
                "--set", "policy.openai.stages[1].response={preset: cloudflare_1009}")
    assert r.code == 0
    assert_golden("policy_explain_cloudflare.txt", r.out)


def test_json(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--ip", "114.114.114.114",
                "--json")
    assert (r.code, r.err) == (0, "")
    data = json.loads(r.out)
    assert data == {
        "decision": "block", "stage": "block",
        "reason": "stage block (block 100% from 2024-07-09T00:00:00Z) covers CN",
        "at": "2024-07-10T00:00:00Z",
        "request": {"provider": "openai", "country": "CN", "ip": "114.114.114.114", "asn": None,
                    "hosting": False, "org": "example-org", "segment": "", "home_country": ""},
        "headers": {},
        "response": {"status": 403, "headers": {"content-type": "application/json"},
                     "body": json.loads(OPENAI_403), "body_bytes": OPENAI_403},
    }
    assert_golden("policy_explain_block.json.txt", r.out)


def test_json_allow(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-06-01", "--country", "US", "--json",
                "--org", "us-startup-000001")
    data = json.loads(r.out)
    assert (data["decision"], data["response"], data["headers"]) == ("allow", None, {})
    assert data["request"] | {} == {"provider": "openai", "country": "US", "ip": "", "asn": None,
                                    "hosting": False, "org": "us-startup-000001", "segment": "startup",
                                    "home_country": "US"}


def test_provider_option(capsys: Capsys) -> None:
    r = run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--country", "CN",
                "--provider", "deepseek", "--json")
    assert json.loads(r.out)["reason"] == "deepseek has no blocking policy"


@pytest.mark.parametrize(("args", "expected"), [
    (("--at", "yesterday", "--ip", "8.8.8.8"), "--at: 'yesterday' is not a date or ISO-8601 instant"),
    (("--at", "2024-07-10", "--ip", "1.2.3.999"), "--ip: '1.2.3.999': not an IP address"),
    (("--at", "2024-07-10", "--country", "ZZ"), "--country: 'ZZ' is not an ISO 3166-1 alpha-2 code"),
    (("--at", "2024-07-10", "--country", "CN", "--provider", "anthropic"),
     "--provider: unknown provider 'anthropic' (this scenario has: openai, zhipu, baidu, tencent, alibaba, "
     "deepseek)"),
    (("--country", "CN"), "regionblock policy explain: the following arguments are required: --at"),
    (("--at", "2024-07-10", "--country", "CN", "--ip", "1.1.1.1"),
     "--ip: not allowed with argument --country"),
    (("--at", "2024-07-10"), "regionblock policy explain: one of the arguments --ip --country is required"),
], ids=["bad-at", "bad-ip", "bad-country", "unknown-provider", "missing-at", "ip-and-country", "no-client"])
def test_bad_input_is_one_line(capsys: Capsys, args: tuple[str, ...], expected: str) -> None:
    assert_one_line_error(run_cli(capsys, *EXPLAIN, "openai-2024-cn-hk", *args), expected)


def test_unknown_scenario(capsys: Capsys) -> None:
    assert_one_line_error(
        run_cli(capsys, *EXPLAIN, "nope", "--at", "2024-07-10", "--country", "CN"),
        "nope: not a file or a shipped scenario (mmc-validation, no-incentives, openai-2024-cn-hk, "
        "staged-percent-rollout, strict-enforcement)")


def _regionblock(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regionblock", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def test_real_process_block() -> None:
    done = _regionblock(*EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--ip", "114.114.114.114")
    assert (done.returncode, done.stderr) == (0, "")
    assert_golden("policy_explain_block.txt", done.stdout)


def test_real_process_error() -> None:
    done = _regionblock(*EXPLAIN, "openai-2024-cn-hk", "--at", "2024-07-10", "--ip", "not-an-ip")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "--ip: 'not-an-ip': not an IP address\n")
