"""The key store: hashed secrets → organisations, per-key limits, reload, and the CLI contract."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.keystore import KeyEntry, KeyFileError, KeyStore, hash_key
from gateway.stages.key_limits import KeyLimits
from tests.gateway.conftest import CN_IP, StartGateway
from tests.gateway.fake_upstream import Faults

SECRET = "sk-live-7f3a9c1e5b2d4f6a8c0e"
OTHER = "sk-live-0000000000000000other"


def write_keys(path: Path, *entries: dict[str, object]) -> Path:
    path.write_text(json.dumps({"keys": list(entries)}))
    return path


def entry(secret: str, **fields: object) -> dict[str, object]:
    return {"sha256": hash_key(secret), "org": "us-enterprise-000007", "segment": "enterprise",
            "home_region": "US", **fields}


async def test_a_stored_key_is_its_organisation(start_gateway: StartGateway, tmp_path: Path
                                                ) -> None:
    keys = write_keys(tmp_path / "keys.json", entry(SECRET, id="acme"))
    gw = await start_gateway(keys_path=keys, insecure_org_keys=False)
    status, headers, _ = await gw.chat(key=SECRET)
    assert status == 200
    row = gw.row(headers["x-request-id"])
    assert (row["org"], row["home_region"]) == ("us-enterprise-000007", "US")


async def test_unknown_keys_and_org_id_keys_are_401(start_gateway: StartGateway, tmp_path: Path
                                                    ) -> None:
    keys = write_keys(tmp_path / "keys.json", entry(SECRET))
    gw = await start_gateway(keys_path=keys, insecure_org_keys=False)
    for key in (OTHER, "sk-cn-enterprise-azure-000001"):  # claiming an allow-listed org
        status, headers, body = await gw.chat(key=key, ip=CN_IP)
        error = json.loads(body)["error"]
        assert (status, error["code"], error["type"]) == (401, "invalid_api_key",
                                                          "invalid_request_error")
        assert key not in error["message"]  # masked, as OpenAI shows it
        assert gw.row(headers["x-request-id"])["status"] == 401


async def test_org_id_keys_only_with_the_insecure_flag(start_gateway: StartGateway) -> None:
    gw = await start_gateway(insecure_org_keys=True)
    assert (await gw.chat(key="sk-us-startup-000001"))[0] == 200
    strict = await start_gateway(insecure_org_keys=False)
    assert (await strict.chat(key="sk-us-startup-000001"))[0] == 401


async def test_per_key_concurrency_is_429(start_gateway: StartGateway, tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.json", entry(SECRET, max_concurrent=1))
    gw = await start_gateway(keys_path=keys, insecure_org_keys=False)
    gw.fake.faults["openai"] = Faults(stall_s=0.3)
    results = await asyncio.gather(gw.chat(key=SECRET), gw.chat(key=SECRET))
    assert sorted(status for status, _, _ in results) == [200, 429]
    [refused] = [json.loads(body) for status, _, body in results if status == 429]
    assert refused["error"]["code"] == "rate_limit_exceeded"
    assert (await gw.chat(key=SECRET))[0] == 200  # the slot was given back


def test_token_bucket_follows_the_rate() -> None:
    limits = KeyLimits()
    key = KeyEntry("k", "org", rate_per_s=2.0, burst=3.0)
    taken = [limits.take(key, t) for t in (0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0)]
    assert taken == [True, True, True, False, True, False, True]


async def test_keys_reload_through_the_admin_api(start_gateway: StartGateway, tmp_path: Path
                                                 ) -> None:
    path = write_keys(tmp_path / "keys.json", entry(SECRET))
    gw = await start_gateway(keys_path=path, insecure_org_keys=False, admin_token="t")
    auth = {"Authorization": "Bearer t"}
    assert (await gw.chat(key=OTHER))[0] == 401
    write_keys(path, entry(SECRET), entry(OTHER, org="us-startup-000009"))
    async with gw.session.post(gw.url + "/admin/keys/reload", json={}, headers=auth) as r:
        assert (r.status, (await r.json())["keys"]) == (200, 2)
    assert (await gw.chat(key=OTHER))[0] == 200
    path.write_text('{"keys": [{"sha256": "nothex", "org": "x"}]}')
    async with gw.session.post(gw.url + "/admin/keys/reload", json={}, headers=auth) as r:
        assert r.status == 400
        assert "keys[0].sha256" in (await r.json())["error"]["message"]
    assert (await gw.chat(key=OTHER))[0] == 200  # the old keys stay


@pytest.mark.parametrize(("doc", "message"), [
    ("keys: 3", "expected a mapping with a list under 'keys'"),
    ("keys: [{sha256: abc, org: x}]", "keys[0].sha256: expected 64 hex digits"),
    ("keys: [{sha256: " + "a" * 64 + "}]", "keys[0].org: expected a non-empty printable string"),
    ("keys: [{sha256: " + "a" * 64 + ", org: x, max_concurrent: 0}]", "keys[0].max_concurrent"),
    ("keys: [{sha256: " + "a" * 64 + ", org: x, colour: red}]", "keys[0]: unknown field 'colour'"),
    ("keys: [{sha256: " + "a" * 64 + ", org: x, home_region: USA}]", "keys[0].home_region"),
    ("keys: [{sha256: " + "a" * 64 + ", org: x}, {sha256: " + "a" * 64 + ", org: y}]",
     "keys[1].sha256: the same key appears twice"),
])
def test_bad_key_files_name_the_entry_and_field(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(doc)
    with pytest.raises(KeyFileError) as info:
        KeyStore.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regionblock", "gateway", "openai-2024-cn-hk",
                           "--port", "0", *args], capture_output=True, text=True, timeout=60)


def test_cli_needs_keys_or_the_insecure_flag(tmp_path: Path) -> None:
    done = _cli("--ledger", str(tmp_path / "l.sqlite"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "--keys: give a key file (--keys FILE), or --insecure-org-keys to accept organisation ids "
        "as keys (tests and demos only)")
    assert "Traceback" not in done.stderr


def test_cli_refuses_a_bad_key_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "keys.yaml"
    bad.write_text("keys: [{sha256: 12, org: x}]")
    done = _cli("--keys", str(bad), "--ledger", str(tmp_path / "l.sqlite"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{bad}: keys[0].sha256: expected 64 hex digits, got 12" in done.stderr


def test_cli_hash_key_prints_the_file_line() -> None:
    done = _cli("--hash-key", SECRET)
    assert (done.returncode, done.stdout) == (0, f"- sha256: {hash_key(SECRET)}\n")


def test_keys_are_looked_up_by_their_hash(tmp_path: Path) -> None:
    store = KeyStore.load(write_keys(tmp_path / "k.json", entry(SECRET)))
    assert store.lookup(SECRET) == KeyEntry(hash_key(SECRET)[:16], "us-enterprise-000007",
                                            "enterprise", "US")
    assert store.lookup(OTHER) is None
    assert SECRET not in (tmp_path / "k.json").read_text()  # the file holds no secret
