"""HTTP/1.1 wire format: the parsed request, writing response heads, reading upstream heads.

Client requests are parsed by httptools (llhttp) in ``gateway.connection``. Response heads are
written here, checked: no value may split the head (CR, LF, NUL) or fail to encode.
The upstream side (``parse_response_head``) reads the providers' answers.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from http import HTTPStatus

from gateway.errors import BadRequest
from gateway.memo import Memo

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")

_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes

REASONS = {s.value: s.phrase for s in HTTPStatus}
STATUS_LINES = {code: f"HTTP/1.1 {code} {phrase}\r\n".encode() for code, phrase in REASONS.items()}


class HeaderTooLarge(BadRequest):
    """A head (or trailer section) above the limit: 431."""

    status = 431
    code = "request_header_fields_too_large"


@dataclass(slots=True)
class Request:
    """One parsed request. Header names are lower-case; repeated headers are joined by ", "."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    peer: str
    body: bytes = b""
    keep_alive: bool = True
    wall_time: float = 0.0  # time.time() when the head was complete
    started: float = 0.0  # loop.time() at the same instant


def wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        return "close" not in connection
    return "keep-alive" in connection


def encode_head(status: int, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                tail: bytes = b"") -> bytes:
    """Status line, Date, the header block, ``tail`` (fields already encoded by the caller: the
    framing, Content-Length and Connection) and the empty line.

    ValueError if a value holds CR, LF or NUL (it would split the head: response splitting) or a
    character outside Latin-1 (not encodable): raised before anything is written, so the caller
    can still answer. Values from configuration go through ``safe_header_value`` first.
    """
    line = STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    block = "".join([f"{k}: {v}\r\n" for k, v in headers])
    fields = len(headers)
    # Each field ends in the one CR LF added here: any other CR or LF (or a NUL) came in a value.
    if block.count("\n") != fields or block.count("\r") != fields or "\x00" in block:
        raise ValueError(f"header value with CR, LF or NUL: {headers!r}")
    try:
        data = block.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"header value outside Latin-1: {exc}") from None
    return b"".join((line, _DATES[time.time() // 1], data, tail, b"\r\n"))  # (// 1: no int())


def safe_header_value(value: str) -> str:
    """A configured value (a scenario's warning text, say) made safe to send: control characters
    become spaces, and a value with non-ASCII text is sent as its UTF-8 bytes (obs-text, which
    httpx and browsers decode as UTF-8) rather than refused."""
    value = _CONTROL.sub(" ", value)
    if value.isascii():
        return value
    return value.encode("utf-8").decode("latin-1")


def _date_of(second: float) -> bytes:
    """``Date: ...`` (RFC 9110 section 6.6.1) of a second."""
    return f"date: {email.utils.formatdate(second, usegmt=True)}\r\n".encode()


_DATES: Memo[float, bytes] = Memo(_date_of, 4)  # formatted once per second


# ------------------------------------------------------------------ responses (upstream side)


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: dict[str, str]
    content_length: int  # -1 chunked, -2 until the connection closes
    keep_alive: bool


def parse_response_head(raw: bytes) -> ResponseHead:
    """Parse an upstream's response head; ValueError if it is not HTTP/1.x."""
    # Decoded once (latin-1: byte for code point), then split; bytes.strip() strips ASCII
    # whitespace only, so the str strip is given the same set.
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() \
            or not parts[1].isascii():
        raise ValueError("malformed status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("malformed header field")
        key = name.strip(_ASCII_SPACE).lower()
        text = value.strip(_ASCII_SPACE)
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous}, {text}"
    status = int(parts[1])
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None and "chunked" in te.lower():
        length = -1
    elif cl is not None:
        if not (cl.isdigit() and cl.isascii()):
            raise ValueError("malformed Content-Length")
        length = int(cl)
    elif status in (204, 304) or 100 <= status < 200:
        length = 0
    else:
        length = -2
    connection = headers.get("connection")
    if parts[0] == "HTTP/1.0":
        keep = connection is not None and "keep-alive" in connection.lower()
    else:
        keep = connection is None or "close" not in connection.lower()
    return ResponseHead(status, headers, length, keep and length != -2)
