"""Request bodies: refused from their Content-Length when larger than the view takes, read with a deadline.

:class:`RequestBodyMiddleware` runs before anything reads a body (the session authentication's CSRF check
would parse a whole multipart form first):

* **Too large**: the view's limit is looked up from the URL before a byte is read. A view names the
  largest body each of its actions takes in ``body_limits`` (``{"slides": callable returning bytes}``);
  every other request takes ``DATA_UPLOAD_MAX_MEMORY_SIZE``. More is a 413 at once, naming both numbers.
* **Stopped arriving**: a read that waits ``REQUEST_BODY_TIMEOUT`` seconds for the next byte fails,
  and the answer is a 408 whoever was reading (a view, a parser, the CSRF check). The deadline is set
  on the client's socket: gunicorn hands it over (``gunicorn.socket``); its own ``timeout`` is the
  worker heartbeat, which a gthread worker keeps beating while a thread waits on a body, so it does
  not answer a stalled body (see docker/gunicorn.conf.py). Django's development server (and the test
  live server) get the same deadline on their connections from :func:`arm_development_server`.

A deadline per read bounds a body that stops; one that trickles a byte every few seconds keeps its
thread, as behind any server without a minimum rate: a reverse proxy in front sets one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.servers import basehttp
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import Resolver404, resolve


def human_bytes(n: float) -> str:
    """``5368709120`` -> ``"5.0 GiB"``: sizes in messages for people."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def body_timeout() -> float:
    """Seconds a request may go without sending the next byte of its body (``REQUEST_BODY_TIMEOUT``)."""
    return float(settings.REQUEST_BODY_TIMEOUT)


def arm_development_server() -> None:
    """Give the connections of Django's development and live-test servers the body deadline.

    Their request handler (socketserver's ``StreamRequestHandler``) applies ``timeout`` to each
    connection's socket; without one a stalled body holds a server thread for ever.
    """
    basehttp.WSGIRequestHandler.timeout = body_timeout()


def body_limit(request: HttpRequest) -> int:
    """The largest body the view of ``request`` takes (its ``body_limits`` for the action, else the default)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    view = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    actions = getattr(match.func, "actions", None) or {}
    limits: dict[str | None, Callable[[], int]] = getattr(view, "body_limits", {})
    limit = limits.get(actions.get((request.method or "").lower()))
    return int(limit()) if limit is not None else int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


class _DeadlineStream:
    """The request's body stream, noting on the request when a read ran into the socket's deadline."""

    def __init__(self, stream: Any, request: HttpRequest) -> None:
        self._stream = stream
        self._request = request

    def _timed(self, read: Callable[..., bytes], *args: Any) -> bytes:
        try:
            data = read(*args)
        except TimeoutError:
            self._request._body_timed_out = True  # type: ignore[attr-defined]
            raise
        return data

    def read(self, *args: Any) -> bytes:
        return self._timed(self._stream.read, *args)

    def readline(self, *args: Any) -> bytes:
        return self._timed(self._stream.readline, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # close() and the rest of the stream's interface


def _answer(detail: str, status: int) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    # CommonMiddleware, which would add it, comes later: without it gunicorn falls back to chunked encoding.
    response["Content-Length"] = str(len(response.content))
    return response


class RequestBodyMiddleware:
    """413 for a body over the view's limit before it is read; 408 for a body that stops arriving."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        announced = request.META.get("CONTENT_LENGTH") or ""
        if not announced:
            return self.get_response(request)
        try:
            length = int(announced)
            if length < 0:
                raise ValueError(announced)
        except ValueError:
            return _answer(f"Content-Length must be a whole number of bytes, not {announced[:40]!r}.", 400)
        if length == 0:
            return self.get_response(request)
        limit = body_limit(request)
        if length > limit:
            return _answer(
                f"The request announces a body of {length:,} bytes ({human_bytes(length)}); this takes at most "
                f"{limit:,} bytes ({human_bytes(limit)}). Nothing was read or stored.", 413)
        client = request.META.get("gunicorn.socket")
        if client is not None:
            client.settimeout(body_timeout())
        request._stream = _DeadlineStream(request._stream, request)  # type: ignore[assignment]
        response = self.get_response(request)
        if getattr(request, "_body_timed_out", False):
            return _answer(
                f"The request body stopped arriving: nothing came for {body_timeout():g} s before its "
                f"{length:,} bytes were complete. A resumable upload keeps what arrived "
                "(GET /api/uploads/{id}/ says where to go on from); any other request stored nothing: send it "
                "again.", 408)
        return response
