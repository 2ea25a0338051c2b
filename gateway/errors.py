"""Errors of the gateway package, and the OpenAI-style error responses they turn into.

Hierarchy::

    GatewayError                 base of every error raised inside the gateway
    ├── ClientError              a request the gateway refuses (4xx): carries the OpenAI error
    │   │                        fields (status, message, type, code, param)
    │   ├── BadRequest           malformed HTTP, JSON or request schema (400 invalid_request_error)
    │   ├── Unauthorized         no usable API key (401)
    │   ├── NotFound             unknown model (404 model_not_found) or route (404)
    │   ├── PayloadTooLarge      body above the limit (413)
    │   ├── RateLimited          a key's own rate or concurrency limit (429 rate_limit_exceeded)
    │   └── Overloaded           admission limit reached (503, answered at once)
    ├── UpstreamError            an upstream provider could not answer properly
    │   ├── UpstreamConnectError could not connect / the connection broke before a response
    │   ├── UpstreamTimeout      no response (or no next chunk) within the upstream timeout
    │   ├── UpstreamStatusError  the upstream answered 5xx (retryable, counts against the breaker)
    │   └── CircuitOpen          the upstream's circuit breaker is open: not even tried
    └── LedgerError              the metering ledger cannot be opened or written

Configuration mistakes on the command line are ``scenarios.errors.UsageError`` (exit status 2).
Every network input error ends as an OpenAI-style JSON body, never a traceback or a 500.
"""

from __future__ import annotations

import json
from types import EllipsisType


class GatewayError(Exception):
    """Base class of the gateway's errors."""


class ClientError(GatewayError):
    """A request refused with an OpenAI-style error body."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | EllipsisType | None = ...,
                 param: str | None = None, status: int | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or []  # extra response headers (Retry-After)
        if not isinstance(code, EllipsisType):
            self.code = code  # None is a code too: OpenAI sends "code": null for some errors
        if status is not None:
            self.status = status

    def body(self) -> bytes:
        return error_body(self.message, type_=self.type, code=self.code, param=self.param)


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401
    code = "invalid_api_key"


class NotFound(ClientError):
    status = 404


class PayloadTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class RateLimited(ClientError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class Overloaded(ClientError):
    status = 503
    type = "server_error"
    code = "overloaded"


class UpstreamError(GatewayError):
    """An upstream failure; ``code`` is what the ledger's ``error`` column records."""

    code = "upstream_error"
    retryable = True


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class UpstreamStatusError(UpstreamError):
    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.headers = headers
        self.code = f"upstream_{status}"


class CircuitOpen(UpstreamError):
    code = "circuit_open"
    retryable = False


class LedgerError(GatewayError):
    """The ledger file cannot be used."""


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> bytes:
    """An OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return json.dumps({"error": {"message": message, "type": type_, "param": param,
                                 "code": code}}).encode()
