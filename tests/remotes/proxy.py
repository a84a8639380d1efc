"""A misbehaving S3 endpoint for tests: an HTTP proxy in front of moto's server.

It forwards every request to moto, except where a rule says otherwise: drop a header
(an endpoint that ignores ``If-None-Match``, §37), refuse requests carrying a header
(an endpoint that rejects SDK checksum headers, §38), answer a share of requests with
``503 SlowDown`` (§40), or answer everything with one canned error (access denied,
wrong region, §39). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import http.client
import random
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Rules:
    drop_headers: set[str] = field(default_factory=set)  # lower-case names removed before forwarding
    reject_header: str | None = None  # a request carrying it gets 400 InvalidArgument
    throttle_rate: float = 0.0  # share of requests answered 503 SlowDown
    canned: tuple[int, str, str, dict[str, str]] | None = None  # (status, code, message, headers)
    seed: int = 0


class FaultProxy:
    """``with FaultProxy(moto_url, Rules(...)) as url:`` — an endpoint URL that misbehaves."""

    def __init__(self, upstream: str, rules: Rules) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules = rules
        self.requests = 0
        self.throttled = 0
        self._lock = threading.Lock()
        self._rng = random.Random(rules.seed)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decide(self) -> str:
        with self._lock:
            self.requests += 1
            if self.rules.throttle_rate and self._rng.random() < self.rules.throttle_rate:
                self.throttled += 1
                return "throttle"
        return "forward"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>"
                ).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rules = proxy.rules
                if rules.canned is not None:
                    status, code, message, headers = rules.canned
                    proxy._decide()
                    return self._error(status, code, message, headers)
                if proxy._decide() == "throttle":
                    return self._error(503, "SlowDown", "Please reduce your request rate.")
                if rules.reject_header and rules.reject_header in {k.lower() for k in self.headers}:
                    return self._error(400, "InvalidArgument", f"{rules.reject_header} is not supported (checksum)")
                headers = {
                    k: v for k, v in self.headers.items()
                    if k.lower() not in _HOP and k.lower() not in rules.drop_headers
                }
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                            self.send_header(k, v)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler
