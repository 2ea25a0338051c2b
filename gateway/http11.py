"""HTTP/1.1 wire format: parsing request and response heads, chunked bodies, writing heads.

A small, strict parser (RFC 9112) written for the gateway's hot path. Strict where lenience is a
request-smuggling risk: a request with both Content-Length and Transfer-Encoding, a repeated or
non-numeric Content-Length, a transfer coding other than ``chunked``, obsolete line folding, or a
header name that is not a token is refused with 400. Sizes are bounded by the caller's limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

from gateway.errors import BadRequest, PayloadTooLarge

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET = re.compile(rb"^/[\x21-\x7e]*$")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,8})(?:;[^\r\n]*)?$")

_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes
REASONS = {s.value: s.phrase for s in HTTPStatus}
STATUS_LINES = {code: f"HTTP/1.1 {code} {phrase}\r\n".encode() for code, phrase in REASONS.items()}


class HeaderTooLarge(BadRequest):
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
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Head:
    """The parsed head of a request: what comes before the body."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    content_length: int  # -1: chunked


def parse_request_head(raw: bytes, *, max_headers: int, max_body: int) -> Head:
    """Parse ``raw`` (the head without the final CRLF CRLF); raise BadRequest on any violation."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]):
        raise BadRequest("malformed request line", code="bad_request_line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("unsupported HTTP version", code="http_version_not_supported")
    if not _TARGET.match(target):
        raise BadRequest("malformed request target", code="bad_request_target")
    if len(lines) - 1 > max_headers:
        raise HeaderTooLarge(f"more than {max_headers} header fields")
    headers = _parse_fields(lines[1:]) if len(lines) > 1 else {}
    length = _body_length(headers, max_body)
    return Head(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"), headers,
                length)


def _parse_fields(lines: list[bytes]) -> dict[str, str]:
    # Decoded once as a whole (latin-1 maps bytes to code points one to one), then split: far
    # fewer calls than decoding each name and value. The checks are those of the bytes: a name is
    # ASCII letters, digits and dashes (fast path) or else must match the full token rule.
    text = b"\r\n".join(lines).decode("latin-1")
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not ((name.isascii() and name.replace("-", "").isalnum())
                             or _TOKEN.match(name.encode("latin-1"))):
            raise BadRequest("malformed header field", code="bad_header")
        key = name.lower()
        value = value.strip(" \t")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise BadRequest("malformed header field value", code="bad_header")
        previous = headers.get(key)
        headers[key] = value if previous is None else f"{previous}, {value}"
    return headers


def _body_length(headers: dict[str, str], max_body: int) -> int:
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None:
        if cl is not None:
            raise BadRequest("both Content-Length and Transfer-Encoding", code="bad_framing")
        if te.strip().lower() != "chunked":
            raise BadRequest(f"unsupported transfer coding {te!r}", code="bad_framing")
        return -1
    if cl is None:
        return 0
    if not cl.isdigit() or len(cl) > 12:
        raise BadRequest("malformed Content-Length", code="bad_framing")
    length = int(cl)
    if length > max_body:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {max_body} bytes")
    return length


def parse_chunked(buf: bytes | bytearray, start: int, max_body: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``: (body, end offset), or None if incomplete."""
    pos = start
    parts: list[bytes] = []
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 64:
                raise BadRequest("malformed chunk size", code="bad_framing")
            return None
        m = _CHUNK_SIZE.match(bytes(buf[pos:eol]))
        if m is None:
            raise BadRequest("malformed chunk size", code="bad_framing")
        size = int(m.group(1), 16)
        total += size
        if total > max_body:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_body} bytes")
        data_start = eol + 2
        if size == 0:
            return _chunked_trailer(buf, data_start, b"".join(parts))
        if len(buf) < data_start + size + 2:
            return None
        if buf[data_start + size:data_start + size + 2] != b"\r\n":
            raise BadRequest("malformed chunk", code="bad_framing")
        parts.append(bytes(buf[data_start:data_start + size]))
        pos = data_start + size + 2


def _chunked_trailer(buf: bytes | bytearray, pos: int, body: bytes) -> tuple[bytes, int] | None:
    """Skip trailer fields after the last chunk; the body ends at an empty line."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        if eol == pos:
            return body, eol + 2
        pos = eol + 2


def wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        return "close" not in connection
    return "keep-alive" in connection


def encode_head(status: int, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
    """Status line and header block, ending with the empty line."""
    line = STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    block = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return line + block.encode("latin-1") + b"\r\n"


# ------------------------------------------------------------------ responses (upstream side)


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: dict[str, str]
    content_length: int  # -1 chunked, -2 until the connection closes
    keep_alive: bool


def parse_response_head(raw: bytes) -> ResponseHead:
    """Parse an upstream's response head; ValueError if it is not HTTP/1.x."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError("malformed status line")
    headers: dict[str, str] = {}
    # Decoded once (latin-1: byte for code point), then split; bytes.strip() strips ASCII
    # whitespace only, so the str strip is given the same set.
    for line in b"\r\n".join(lines[1:]).decode("latin-1").split("\r\n") if len(lines) > 1 else ():
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("malformed header field")
        key = name.strip(_ASCII_SPACE).lower()
        text = value.strip(_ASCII_SPACE)
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous}, {text}"
    status = int(parts[1])
    te = headers.get("transfer-encoding", "").lower()
    if "chunked" in te:
        length = -1
    elif "content-length" in headers:
        cl = headers["content-length"]
        if not cl.isdigit():
            raise ValueError("malformed Content-Length")
        length = int(cl)
    elif status in (204, 304) or 100 <= status < 200:
        length = 0
    else:
        length = -2
    connection = headers.get("connection", "").lower()
    http10 = parts[0] == b"HTTP/1.0"
    keep = ("keep-alive" in connection) if http10 else ("close" not in connection)
    return ResponseHead(status, headers, length, keep and length != -2)
