"""Who is calling: ``Authorization: Bearer KEY`` → organisation.

KEY is ``sk-<org id>`` or the bare org id. A scenario organisation id (``cn-startup-000042``)
carries its home region and segment, as a provider knows them from billing; any other key is an
organisation of unknown home and segment. No key at all is OpenAI's 401.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gateway.errors import Unauthorized
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


def identify(authorization: str | None) -> Identity:
    """The caller's identity; Unauthorized when there is no usable bearer key."""
    if not authorization:
        raise Unauthorized(NO_KEY_MESSAGE, code=None)
    return _identify(authorization)


@functools.lru_cache(maxsize=65536)
def _identify(authorization: str) -> Identity:
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized(NO_KEY_MESSAGE, code=None)
    if len(key) > _MAX_KEY or not key.isprintable() or " " in key:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    org = key[3:] if key.startswith("sk-") else key
    parsed = parse_org_id(org)
    home, segment = parsed if parsed else ("", "")
    return Identity(key, org, home, segment)
