"""The one retry policy of every JSON-RPC call, at httpx's transport seam.

solana-py's ``AsyncClient`` posts every request through an ``httpx2.AsyncClient``
(``client._provider.session``); ``rpc_client`` swaps that session for one whose transport
is a ``RetryingTransport``, so reads, sends, status polls and health probes all go through
the same policy:

- 429, 5xx, refused/reset/dropped connections and timeouts are retried with exponential
  backoff and full jitter, within a total time budget;
- ``Retry-After`` (seconds or an HTTP date) is honoured, up to a cap;
- on a failure the next of the cluster's endpoints is tried; a failed endpoint rests for a
  while, then requests go back to the first one;
- each endpoint has a token bucket (requests per second);
- a 4xx other than 429 raises ``RpcRefused`` at once, and any other answer (a JSON-RPC
  error included) is returned as is: the server's verdict, which repeating would not change.

When the budget runs out, ``RpcUnavailable`` names each endpoint (scheme, host and port
only: paths and queries often hold API keys), what it answered last and how many attempts
it had.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
from solana.rpc.async_api import AsyncClient

from core.errors import InputError, RpcRefused, RpcUnavailable

logger = logging.getLogger("programs.rpc_transport")

# Answers worth repeating; every other status is the server's verdict.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))
# Transport faults worth repeating: timeouts, refused/reset connections, a connection
# dropped before the answer. Not: a malformed URL or an unsupported scheme.
RETRY_EXCEPTIONS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to repeat a request; the defaults suit a public cluster."""

    budget_seconds: float = 60.0  # total time one request may take, retries included
    base_delay: float = 0.2  # first backoff ceiling; doubles per failed round
    max_delay: float = 5.0  # backoff ceiling
    retry_after_cap: float = 20.0  # a longer Retry-After is cut to this
    attempt_timeout: float = 30.0  # one attempt's HTTP timeout
    endpoint_rest_seconds: float = 10.0  # a failed endpoint is tried last for this long
    requests_per_second: float | None = 40.0  # per endpoint; None: no limit


class TokenBucket:
    """``rate`` requests a second, bursts of up to ``burst``; ``acquire`` waits for a token."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise InputError(f"requests per second must be positive, got {rate}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                # Holding the lock while waiting keeps the callers in arrival order.
                await asyncio.sleep(wait)
                self._stamp = time.monotonic()
                self._tokens = 1.0
            self._tokens -= 1


def redacted(url: str) -> str:
    """scheme://host:port of ``url``: what an error may show of an endpoint."""
    parsed = httpx2.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


@dataclass
class _Endpoint:
    url: httpx2.URL
    name: str
    bucket: TokenBucket | None
    rest_until: float = 0.0  # monotonic; tried last until then
    not_before: float = 0.0  # monotonic; its Retry-After
    last: str = "not tried"
    attempts: int = 0
    failures: int = 0


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _method(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return "request"
    if isinstance(data, dict):
        return str(data.get("method", "request"))
    return "batch request"


def _fault_name(exc: Exception) -> str:
    if isinstance(exc, httpx2.ConnectError):
        return f"refused the connection ({type(exc).__name__})"
    if isinstance(exc, httpx2.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"dropped the connection ({type(exc).__name__})"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of ms of CPU; every client of a process shares one.
    return httpx2.create_ssl_context()


class RetryingTransport(httpx2.AsyncBaseTransport):
    """Sends each request to the cluster's endpoints under ``policy`` (module docstring).

    ``urls`` replace the request's own URL: the first healthy endpoint gets it. ``inner``
    does the HTTP (an ``httpx2.AsyncHTTPTransport`` unless given).
    """

    def __init__(
        self,
        urls: Sequence[str],
        policy: RetryPolicy | None = None,
        *,
        inner: httpx2.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not urls:
            raise InputError("rpc_urls is empty: give the cluster block at least one endpoint")
        self.policy = policy or RetryPolicy()
        rate = self.policy.requests_per_second
        self.endpoints = [
            _Endpoint(
                url=httpx2.URL(url),
                name=f"endpoint {i + 1} ({redacted(url)})",
                bucket=TokenBucket(rate) if rate else None,
            )
            for i, url in enumerate(urls)
        ]
        self._inner = inner or httpx2.AsyncHTTPTransport(verify=_ssl_context(), http2=True)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.attempts = 0  # every attempt this transport made, for tests and logs

    def _first(self, now: float) -> int:
        """The first endpoint not resting, else the one whose rest ends first."""
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.rest_until <= now:
                return index
        return min(range(len(self.endpoints)), key=lambda i: self.endpoints[i].rest_until)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        method = _method(body)
        policy = self.policy
        start = time.monotonic()
        deadline = start + policy.budget_seconds
        index = self._first(start)
        tried: set[int] = set()
        rounds = 0
        seen: dict[int, tuple[str, int]] = {}  # this request's view of each endpoint
        while True:
            endpoint = self.endpoints[index]
            if endpoint.bucket is not None:
                await endpoint.bucket.acquire()
            endpoint.attempts += 1
            self.attempts += 1
            attempts = seen.get(index, ("", 0))[1]
            remaining = deadline - time.monotonic()
            retry_after: float | None = None
            outcome: str
            try:
                response = await self._inner.handle_async_request(
                    self._to(request, endpoint.url, body, max(0.1, remaining))
                )
            except RETRY_EXCEPTIONS as exc:
                outcome = _fault_name(exc)
            else:
                status = response.status_code
                if status not in RETRY_STATUSES:
                    endpoint.rest_until = 0.0
                    endpoint.last = f"HTTP {status}"
                    if 400 <= status < 500:
                        await response.aclose()
                        raise RpcRefused(
                            f"RPC {method}: {endpoint.name} refused the request with HTTP "
                            f"{status} {response.reason_phrase}; not retried. Check the cluster "
                            "block's rpc_urls (the URL, and its API key if the provider needs one)"
                        )
                    return response
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                await response.aread()
                await response.aclose()
                outcome = f"answered HTTP {response.status_code}"
            endpoint.last = outcome
            endpoint.failures += 1
            seen[index] = (outcome, attempts + 1)
            now = time.monotonic()
            endpoint.rest_until = now + policy.endpoint_rest_seconds
            if retry_after is not None:
                endpoint.not_before = now + min(retry_after, policy.retry_after_cap)
            tried.add(index)
            # Fail over to the next endpoint at once; when every one failed this round,
            # back off (full jitter). Never before an endpoint's own Retry-After.
            index = (index + 1) % len(self.endpoints)
            wait = 0.0
            if index in tried:
                rounds += 1
                tried.clear()
                ceiling = min(policy.max_delay, policy.base_delay * 2 ** (rounds - 1))
                # Clipped so the budget's last moments still get an attempt.
                wait = min(self._rng.uniform(0, ceiling), max(0.0, deadline - now - 0.05))
            wait = max(wait, self.endpoints[index].not_before - now)
            if now + wait >= deadline or deadline - now < 0.1:
                raise self._give_up(method, now - start, seen)
            logger.debug(
                "%s: %s %s; next attempt on %s in %.2f s",
                method,
                endpoint.name,
                outcome,
                self.endpoints[index].name,
                wait,
            )
            if wait > 0:
                await self._sleep(wait)

    def _to(
        self, request: httpx2.Request, url: httpx2.URL, body: bytes, timeout: float
    ) -> httpx2.Request:
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in ("host",)]
        extensions = dict(request.extensions)
        seconds = min(self.policy.attempt_timeout, timeout)
        extensions["timeout"] = httpx2.Timeout(seconds).as_dict()
        return httpx2.Request(
            request.method, url, headers=headers, content=body, extensions=extensions
        )

    def _give_up(
        self, method: str, elapsed: float, seen: dict[int, tuple[str, int]]
    ) -> RpcUnavailable:
        parts = []
        details = []
        for index, endpoint in enumerate(self.endpoints):
            outcome, attempts = seen.get(index, ("was not tried (no time left)", 0))
            parts.append(f"{endpoint.name} {outcome} ({attempts} attempts)")
            details.append((endpoint.name, outcome, attempts))
        total = sum(a for _, _, a in details)
        return RpcUnavailable(
            f"RPC {method} failed after {total} attempts in {elapsed:.1f} s: "
            + "; ".join(parts)
            + ". The endpoints are overloaded or unreachable: retry later, or add another "
            "endpoint to the cluster block's rpc_urls",
            details,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.cache
def _prototype(url: str) -> AsyncClient:
    return AsyncClient(url)


def retrying_client(
    urls: Sequence[str],
    policy: RetryPolicy | None = None,
    *,
    inner: httpx2.AsyncBaseTransport | None = None,
) -> AsyncClient:
    """solana-py's ``AsyncClient`` whose every request goes through ``RetryingTransport``."""
    policy = policy or RetryPolicy()
    transport = RetryingTransport(urls, policy, inner=inner)
    # A copy of one unconnected client per URL: AsyncClient() builds an HTTP session of
    # its own, loading the CA bundle (tens of ms of CPU) for a session replaced below.
    client = copy.copy(_prototype(urls[0]))
    client._provider = copy.copy(client._provider)
    # AsyncClient takes no transport argument; its provider posts through ``session``.
    client._provider.session = httpx2.AsyncClient(
        transport=transport, timeout=httpx2.Timeout(policy.attempt_timeout)
    )
    # The policy retries transport faults itself; solana-py's one extra retry would
    # repeat a whole budget.
    client._provider._max_transport_retries = 0
    return client


__all__ = [
    "RETRY_STATUSES",
    "RetryPolicy",
    "RetryingTransport",
    "TokenBucket",
    "redacted",
    "retry_after_seconds",
    "retrying_client",
]
