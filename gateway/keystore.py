"""The API key store: ``--keys FILE`` maps hashed secrets to organisations.

The file (YAML or JSON) holds no secret, only the SHA-256 of each key, so it can be read by
whoever deploys the gateway without leaking a credential::

    keys:
      - sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        id: acme-prod            # optional; names the key in logs and policy hashing
        org: us-enterprise-000001
        segment: enterprise      # optional ("" unknown)
        home_region: US          # optional, ISO country ("" unknown)
        rate_per_s: 10           # optional: sustained requests per second (token bucket)
        burst: 20                # optional: bucket size (default: max(1, rate_per_s))
        max_concurrent: 4        # optional: requests of this key in progress at once

``regionblock gateway --hash-key KEY`` prints the line for a key. Keys are random high-entropy
strings, so one SHA-256 suffices (as for GitHub's or Stripe's token lookups); a presented key is
hashed and looked up, never compared character by character.

A bad file is refused as a whole with one line naming the file, the entry and the field
(``KeyFileError``), at start-up (exit 2) or on reload (the admin API answers 400 and keeps the
keys it had).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import GatewayError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = frozenset({"sha256", "id", "org", "segment", "home_region", "rate_per_s", "burst",
                     "max_concurrent"})


class KeyFileError(GatewayError):
    """The key file cannot be read or is not valid."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key's organisation and limits (``None``: no limit)."""

    key_id: str
    org: str
    segment: str = ""
    home_region: str = ""
    rate_per_s: float | None = None
    burst: float | None = None
    max_concurrent: int | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class KeyStore:
    """Hashed secret → KeyEntry; immutable (a reload builds a new store)."""

    def __init__(self, entries: Mapping[str, KeyEntry], source: Path | None = None) -> None:
        self._entries = dict(entries)
        self.source = source

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: str) -> KeyEntry | None:
        return self._entries.get(hash_key(key))

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise KeyFileError(f"{path}: cannot read the key file: {exc}") from None
        try:
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise KeyFileError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}:"
                               f" {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyFileError(f"{path}: expected a mapping with a list under 'keys'")
        entries: dict[str, KeyEntry] = {}
        for i, item in enumerate(doc["keys"]):
            digest, entry = _entry(item, f"{path}: keys[{i}]")
            if digest in entries:
                raise KeyFileError(f"{path}: keys[{i}].sha256: the same key appears twice")
            entries[digest] = entry
        return cls(entries, path)


def _entry(item: Any, where: str) -> tuple[str, KeyEntry]:
    if not isinstance(item, dict):
        raise KeyFileError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, item)) - _FIELDS)
    if unknown:
        raise KeyFileError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    digest = item.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
        raise KeyFileError(f"{where}.sha256: expected 64 hex digits, got {digest!r}")
    org = _text(item, "org", where, required=True)
    home = _text(item, "home_region", where).upper()
    if home and (len(home) != 2 or not home.isalpha() or not home.isascii()):
        raise KeyFileError(f"{where}.home_region: {home!r} is not an ISO 3166-1 alpha-2 code")
    rate = _number(item, "rate_per_s", where)
    burst = _number(item, "burst", where)
    if burst is not None and rate is None:
        raise KeyFileError(f"{where}.burst: only meaningful with rate_per_s")
    concurrent = item.get("max_concurrent")
    if concurrent is not None and (isinstance(concurrent, bool) or not isinstance(concurrent, int)
                                   or concurrent < 1):
        raise KeyFileError(f"{where}.max_concurrent: expected an integer >= 1, got {concurrent!r}")
    key_id = _text(item, "id", where) or digest.lower()[:16]
    return digest.lower(), KeyEntry(key_id, org, _text(item, "segment", where), home, rate,
                                    burst if burst is not None else
                                    (max(1.0, rate) if rate is not None else None), concurrent)


def _text(item: dict[str, Any], name: str, where: str, *, required: bool = False) -> str:
    value = item.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > 128 or not value.isprintable():
        raise KeyFileError(f"{where}.{name}: expected a non-empty printable string, got {value!r}")
    return value


def _number(item: dict[str, Any], name: str, where: str) -> float | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise KeyFileError(f"{where}.{name}: expected a number > 0, got {value!r}")
    return float(value)
