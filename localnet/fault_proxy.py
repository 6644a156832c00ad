"""A fault-injecting JSON-RPC proxy: what a busy RPC provider does to a client, on demand.

    python -m localnet.fault_proxy --upstream http://127.0.0.1:8899 \\
        --fault-rate 0.2 --seconds 600 --seed 7 [--port 0] [--delay 2]

Every POST is forwarded to ``--upstream``, except that with probability ``--fault-rate``
(a seeded RNG, so a run can be repeated) one fault, chosen uniformly, happens instead:

- ``429``: Too Many Requests with ``Retry-After``, upstream not called;
- ``503``: Service Unavailable, upstream not called;
- ``drop_before``: the connection is reset before anything is forwarded;
- ``drop_after``: the request IS forwarded (the upstream acts on it), then the connection
  is reset: the client never sees the answer;
- ``delay``: the answer comes ``--delay`` seconds late.

It listens on loopback only and refuses any other address; it stops by itself after
``--seconds``. ``counts`` says how many of each fault it injected (and how many requests
it forwarded), so tests can assert the faults really happened.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import logging
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from core.errors import InputError
from core.http_server import BackgroundHTTPServer

logger = logging.getLogger("localnet.fault_proxy")

FAULTS = ("429", "503", "drop_before", "drop_after", "delay")
MAX_SECONDS = 24 * 3600


def _loopback(host: str) -> str:
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        raise InputError(f"--host {host!r} does not resolve; use 127.0.0.1") from None
    if not address.is_loopback:
        raise InputError(
            f"--host {host!r} is not a loopback address: the fault proxy only listens on "
            "127.0.0.1 (it would let anyone on the network reach the upstream)"
        )
    return str(address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any  # carries ``proxy``

    def do_POST(self) -> None:
        proxy: FaultProxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        fault = proxy.choose()
        if fault == "429":
            self._reply(429, b"Too Many Requests", {"Retry-After": proxy.retry_after})
        elif fault == "503":
            self._reply(503, b"Service Unavailable")
        elif fault == "drop_before":
            self._reset()
        else:
            if fault == "delay":
                time.sleep(proxy.delay_seconds)
            status, answer = proxy.forward(body)
            if fault == "drop_after":
                self._reset()
            else:
                self._reply(status, answer, {"Content-Type": "application/json"})

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        # SO_LINGER 0: close sends RST, as a provider's load balancer dropping us does.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class FaultProxy(BackgroundHTTPServer):
    """The proxy (module docstring); a context manager, stopped after ``seconds`` anyway."""

    def __init__(
        self,
        upstream: str,
        *,
        fault_rate: float,
        seconds: float,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_seconds: float = 2.0,
        retry_after: str = "1",
        faults: Sequence[str] = FAULTS,
    ) -> None:
        if not 0 <= fault_rate <= 1:
            raise InputError(f"--fault-rate {fault_rate}: give a fraction between 0 and 1")
        if not 0 < seconds <= MAX_SECONDS:
            raise InputError(f"--seconds {seconds}: give 1 to {MAX_SECONDS} (it must stop)")
        unknown = set(faults) - set(FAULTS)
        if unknown or not faults:
            raise InputError(f"faults {sorted(unknown)}: choose among {', '.join(FAULTS)}")
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise InputError(f"--upstream {upstream!r}: give an http://host:port URL")
        self.upstream = parsed
        self.fault_rate = fault_rate
        self.seconds = seconds
        self.delay_seconds = delay_seconds
        self.retry_after = retry_after
        self.faults = tuple(faults)
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._queued: list[str | None] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._timer: threading.Timer | None = None
        self.stopped = threading.Event()
        super().__init__(
            _Handler,
            host=_loopback(host),
            port=port,
            name="fault-proxy",
            wait_for_requests=False,
            proxy=self,
        )

    def queue(self, *faults: str | None) -> None:
        """The next requests get these faults (None: forwarded), before the RNG decides."""
        unknown = {f for f in faults if f is not None} - set(FAULTS)
        if unknown:
            raise InputError(f"faults {sorted(unknown)}: choose among {', '.join(FAULTS)}")
        with self._lock:
            self._queued.extend(faults)

    def choose(self) -> str | None:
        """This request's fault (None: forward it untouched); counted."""
        with self._lock:
            if self._queued:
                fault = self._queued.pop(0)
            elif self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
            else:
                fault = None
            self.counts[fault or "forwarded"] += 1
            return fault

    def forward(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` upstream on this thread's connection; (status, answer)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        for attempt in range(2):
            if conn is None:
                conn = http.client.HTTPConnection(
                    self.upstream.hostname or "127.0.0.1", self.upstream.port or 80, timeout=60
                )
                self._local.conn = conn
            try:
                conn.request(
                    "POST",
                    self.upstream.path or "/",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = self._local.conn = None
                if attempt:
                    return 502, b"upstream unreachable"
        return 502, b"upstream unreachable"

    def start(self) -> Self:
        if not self.started:
            super().start()
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _expire(self) -> None:
        logger.info("fault proxy: %s s are up; stopping", self.seconds)
        self.stop()

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        super().stop()
        self.stopped.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localnet.fault_proxy",
        description="A loopback JSON-RPC proxy that injects 429, 503, dropped connections "
        "and delays into a fraction of requests, for a bounded time.",
    )
    parser.add_argument("--upstream", required=True, help="the RPC URL to forward to")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="0..1 (default 0.2)")
    parser.add_argument("--seconds", type=float, default=600, help="stop after (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds a delay lasts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        proxy = FaultProxy(
            args.upstream,
            fault_rate=args.fault_rate,
            seconds=args.seconds,
            seed=args.seed,
            host=args.host,
            port=args.port,
            delay_seconds=args.delay,
        )
        proxy.start()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(proxy.url, flush=True)
    try:
        proxy.stopped.wait()
    except KeyboardInterrupt:
        proxy.stop()
    print(dict(proxy.counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
