"""HTTP plumbing for the web API: JSON errors, the request guard (auth, host, origin, body size),
query/body parameter parsing and byte-range responses. Nothing here knows about memories."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
from datetime import datetime, timezone
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import (
    AimemoryError,
    FilterError,
    InputError,
    InputTooLargeError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
    StoreClosedError,
    UnsupportedInputError,
)

log = logging.getLogger("aimemory.web")

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class ApiJSON(JSONResponse):
    """JSON that never fails to render: non-finite floats (which a Python caller may have stored in
    metadata) become null instead of a 500, since NaN is not JSON."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            return super().render(_finite(content))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def loads(raw: str | bytes, what: str) -> Any:
    """Strict JSON: NaN, Infinity and overflowing numbers are refused (they could not be sent back)."""
    def bad_number(token: str) -> float:
        raise bad(f"{what} holds {token}, which is not a JSON number")

    def number(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            bad_number(token)
        return value

    try:
        return json.loads(raw, parse_constant=bad_number, parse_float=number)
    except ValueError as exc:
        raise bad(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise bad(f"{what} is nested too deeply") from None


class ApiError(Exception):
    """An error with its HTTP status, rendered as ``{"error": {"type", "message"}}``."""

    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


def error_response(status: int, type_: str, message: str, headers: dict | None = None) -> JSONResponse:
    return ApiJSON({"error": {"type": type_, "message": message}}, status_code=status,
                        headers={**SECURITY_HEADERS, **(headers or {})})


def status_of(exc: BaseException) -> int:
    """The HTTP status of a library error: the mapping documented in the README."""
    if isinstance(exc, InputTooLargeError):
        return 413
    if isinstance(exc, UnsupportedInputError):
        return 415
    if isinstance(exc, (InputError, FilterError, ModelMismatchError)):
        return 400
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (ModelError, StoreClosedError)):
        return 503  # the server cannot serve this now; the request itself may be fine
    return 500


def error_body(exc: BaseException) -> dict:
    if isinstance(exc, AimemoryError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "InternalError", "message": "internal error; see the server log"}


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.type, exc.message, exc.headers)


async def on_library_error(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    body = error_body(exc)
    return error_response(status, body["type"], body["message"])


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed", 400: "BadRequest"}
    return error_response(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail),
                          dict(exc.headers or {}))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    # last resort: a JSON body, never Starlette's plain-text page, and the traceback in the log
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "InternalError", "internal error; see the server log")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BodyTooLarge(Exception):
    pass


class Guard:
    """Pure-ASGI middleware run before every request.

    * token set: ``Authorization: Bearer <token>`` on every /api route (constant-time compare);
    * no token (loopback only): the Host header must be a loopback name, which defeats DNS
      rebinding, where a web page re-points its own domain at 127.0.0.1 to read the API;
    * unsafe methods from another origin are refused, because a multipart POST is a "simple"
      request that any web page could send to localhost without a CORS preflight;
    * bodies over ``max_body`` bytes get 413, by Content-Length up front or while streaming."""

    def __init__(self, app, *, token: str | None, max_body: int):
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._check(scope, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge()
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in have]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large()(scope, receive, send)

    def _too_large(self) -> Response:
        return error_response(413, "RequestTooLarge", f"request body is over the server's "
                              f"{self.max_body:,}-byte limit; send fewer or smaller files per request")

    def _check(self, scope, headers: dict) -> Response | None:
        path = scope.get("path", "")
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.token is None and not is_loopback(hostname):
            return error_response(403, "Forbidden", "this server only answers to localhost names "
                                  "(start it with --token to serve other hosts)")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site" or (
                    origin is not None and origin.split("://", 1)[-1] != host):
                return error_response(403, "Forbidden", "cross-origin requests are not accepted")
        if self.token is not None and path.startswith("/api/"):
            auth = headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return error_response(401, "Unauthorized", "send 'Authorization: Bearer <token>' "
                                      "with the token the server was started with",
                                      {"www-authenticate": 'Bearer realm="aimemory"'})
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, "BadRequest", "Content-Length is not a number")
            if int(length) > self.max_body:
                return self._too_large()
        return None


# -- parameters ------------------------------------------------------------------------------------
def bad(message: str) -> ApiError:
    return ApiError(400, "InputError", message)


def as_int(value: Any, name: str, lo: int, hi: int, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise bad(f"{name} must be an integer from {lo} to {hi}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise bad(f"{name} must be an integer from {lo} to {hi}; got {value!r}") from None
    if isinstance(value, float) and not value.is_integer():
        raise bad(f"{name} must be an integer from {lo} to {hi}; got {value!r}")
    if not lo <= n <= hi:
        raise bad(f"{name} must be from {lo} to {hi}; got {n}")
    return n


def as_fraction(value: Any, name: str) -> float | None:
    """An optional number from 0 to 1 (a query parameter arrives as text)."""
    if value is None or value == "":
        return None
    try:
        x = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        x = float("nan")
    if not 0.0 <= x <= 1.0:
        raise bad(f"{name} must be a number from 0 to 1; got {value!r}")
    return x


def as_bool(value: Any, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise bad(f"{name} must be true or false; got {value!r}")


def as_str(value: Any, name: str, default: str | None = None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad(f"{name} must be a string; got {type(value).__name__}")
    return value


def as_modalities(value: Any) -> list[str] | None:
    """'image', 'image,audio' or a JSON list -> a list (validated by the store)."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        parts = value
    else:
        raise bad("modality must be 'image', 'audio', 'text', 'video' or a list of them")
    for p in parts:
        if p not in ("image", "audio", "text", "video"):
            raise bad(f"modality {p!r} is not one of image, audio, text, video")
    return parts or None


def as_json_object(value: Any, name: str) -> dict | None:
    """A dict, or a string holding a JSON object (form fields and query strings carry strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = loads(value, name)
    if not isinstance(value, dict):
        raise bad(f"{name} must be a JSON object like {{\"tags\": \"pets\"}}")
    return value


def as_where(value: Any) -> dict | None:
    """A ``where`` filter, checked up front: the store only checks values it meets, so a bad filter
    over an empty namespace would otherwise pass unnoticed."""
    where = as_json_object(value, "where")
    for key, want in (where or {}).items():
        for w in want if isinstance(want, list) else [want]:
            if w is not None and not isinstance(w, (str, int, float, bool)):
                raise ApiError(400, "FilterError", f"where[{key!r}] must be a string, number, boolean, "
                               "null or a list of them")
    return where


def as_seconds(value: Any, name: str) -> float:
    """A position in a recording, in seconds (0 when absent)."""
    try:
        seconds = float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        raise bad(f"{name} must be seconds from the start (e.g. 12.5); got {str(value)[:40]!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise bad(f"{name} must be a finite number of seconds >= 0")
    return seconds


def as_time(value: Any, name: str) -> float | None:
    """ISO 8601 (a date or a date-time; naive means UTC) or epoch seconds -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise bad(f"{name} must be an ISO 8601 time or epoch seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise bad(f"{name} must be an ISO 8601 time (2026-01-31T12:00:00Z) or epoch seconds; "
                          f"got {text[:40]!r}") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = when.timestamp()
    if not math.isfinite(seconds):
        raise bad(f"{name} must be a finite time")
    return seconds


def as_float(value: Any, name: str) -> float | None:
    """A finite number, or a string holding one (form fields and query strings carry strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise bad(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad(f"{name} must be a number; got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise bad(f"{name} must be a finite number")
    return number


SEMANTIC_FIELDS = ("id", "ttl", "expires_at", "created_by", "derived_from", "near_duplicate", "on_near_duplicate")


def as_semantics(fields: dict, n_items: int) -> dict[str, Any]:
    """The remember fields of ``aimemory.semantics`` -> ``remember_many`` keywords (the store checks
    the values): ``id`` (one item; or a list, one per item), ``ttl`` (seconds), ``expires_at``,
    ``created_by``, ``derived_from`` (ids, a list or comma-separated), ``near_duplicate`` (a cosine),
    ``on_near_duplicate`` (report or merge)."""
    out: dict[str, Any] = {}
    ids = fields.get("id")
    if ids is not None and ids != "":
        ids = [ids] if isinstance(ids, str) else ids
        if not isinstance(ids, list) or len(ids) != n_items:
            raise bad(f"id names one memory per item: send {n_items} id(s) (a string for one item, else a list)")
        out["ids"] = ids
    if (ttl := as_float(fields.get("ttl"), "ttl")) is not None:
        out["ttl"] = ttl
    if (expires := as_time(fields.get("expires_at"), "expires_at")) is not None:
        out["expires_at"] = expires
    if (who := as_str(fields.get("created_by"), "created_by")) is not None:
        out["created_by"] = who
    parents = fields.get("derived_from")
    if parents:
        parents = [t.strip() for t in parents.split(",") if t.strip()] if isinstance(parents, str) else parents
        if not isinstance(parents, list) or not all(isinstance(t, str) for t in parents):
            raise bad("derived_from must be a list of memory ids or a comma-separated string")
        out["derived_from"] = parents
    if (near := as_float(fields.get("near_duplicate"), "near_duplicate")) is not None:
        out["near_duplicate"] = near
    if (mode := as_str(fields.get("on_near_duplicate"), "on_near_duplicate")):
        out["on_near_duplicate"] = mode
    return out


# -- byte ranges -----------------------------------------------------------------------------------
def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``Range: bytes=a-b`` -> (start, end inclusive); None to send everything; "unsatisfiable".
    Only the first range of a multi-range request is honoured (players ask for one)."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.split("=", 1)[1].split(",")[0].strip()
    first, _, last = spec.partition("-")
    try:
        if first == "":
            if not last.isdigit():
                return None
            n = int(last)
            if n == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def bytes_response(data: bytes, media_type: str, range_header: str | None, headers: dict) -> Response:
    """The bytes, or the asked-for part of them (206), or 416; always ``Accept-Ranges: bytes``."""
    headers = {**headers, "accept-ranges": "bytes"}
    span = parse_range(range_header, len(data))
    if span == "unsatisfiable":
        return error_response(416, "RangeNotSatisfiable", f"the content is {len(data)} bytes long",
                              {"content-range": f"bytes */{len(data)}"})
    if span is None:
        return Response(data, media_type=media_type, headers=headers)
    start, end = span  # type: ignore[misc]
    headers["content-range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start:end + 1], status_code=206, media_type=media_type, headers=headers)
