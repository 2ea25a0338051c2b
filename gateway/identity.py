"""Who is calling: ``Authorization: Bearer KEY`` → organisation.

With a key store (``--keys FILE``, see ``gateway.keystore``) a key is looked up by its hash and
gives the organisation, segment and home region its owner registered; an unknown key is OpenAI's
401 ``invalid_api_key``. No key at all is OpenAI's 401 with ``code: null``.

``--insecure-org-keys`` (tests, load tests, the demo) also accepts KEY = ``sk-<org id>`` or the
bare org id, trusting the client's word for who it is: a scenario organisation id
(``cn-startup-000042``) carries its home region and segment; any other key is an organisation of
unknown home and segment. Anyone may then claim any organisation, an allow-listed one included.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import Unauthorized
from gateway.keystore import KeyEntry, KeyStore
from gateway.memo import Memo
from scenarios.population import parse_org_id

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
    "username) if you're accessing the API from your browser and are prompted for a username. You "
    "can obtain an API key from https://platform.openai.com/account/api-keys."
)
_MAX_KEY = 256


@dataclass(frozen=True, slots=True)
class Identity:
    key: str
    org: str
    home_region: str  # "" unknown
    segment: str  # "" unknown
    entry: KeyEntry | None = None  # from the key store (its limits); None for an org-id key


def identify(store: KeyStore | None, authorization: str | None, *,
             insecure_org_keys: bool) -> Identity:
    """The caller's identity; Unauthorized when there is no usable, known bearer key."""
    if not authorization:
        raise Unauthorized(NO_KEY_MESSAGE, code=None)
    key = _BEARER_KEYS[authorization]
    if store is not None:
        entry = store.lookup(key)
        if entry is not None:
            return Identity(entry.key_id, entry.org, entry.home_region, entry.segment, entry)
    if insecure_org_keys:
        return _ORG_KEY_IDENTITIES[key]
    raise Unauthorized(f"Incorrect API key provided: {_masked(key)}. You can find your API key "
                       "at https://platform.openai.com/account/api-keys.", code="invalid_api_key")


def bearer_key(authorization: str) -> str:
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized(NO_KEY_MESSAGE, code=None)
    if len(key) > _MAX_KEY or not key.isprintable() or " " in key:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    return key


def _masked(key: str) -> str:
    """As OpenAI shows a wrong key: its first and last characters only."""
    return f"{key[:3]}{'*' * 4}{key[-4:]}" if len(key) > 10 else "*" * len(key)


def org_key_identity(key: str) -> Identity:
    org = key[3:] if key.startswith("sk-") else key
    parsed = parse_org_id(org)
    home, segment = parsed if parsed else ("", "")
    return Identity(key, org, home, segment)


# Both pure, and the same few keys come again and again: remembered (a Memo hit is one dict
# look-up; an lru_cache hit costs ten times that on this path).
_BEARER_KEYS: Memo[str, str] = Memo(bearer_key, 65536)
_ORG_KEY_IDENTITIES: Memo[str, Identity] = Memo(org_key_identity, 65536)
