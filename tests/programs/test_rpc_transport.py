"""The one RPC retry policy, over real HTTP: small stub servers that answer as told, and
the project's fault proxy in front of a real localnet."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from solana.rpc.core import RPCException
from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer

from core.errors import InputError, RpcRefused, RpcUnavailable
from core.http_server import BackgroundHTTPServer, free_port
from localnet import LocalnetServer
from localnet.fault_proxy import FAULTS, FaultProxy
from programs import send
from programs.rpc_transport import (
    RetryPolicy,
    TokenBucket,
    retry_after_seconds,
    retrying_client,
)

REPO = Path(__file__).resolve().parents[2]
SLOT = {"jsonrpc": "2.0", "result": 7, "id": 0}
FAST = RetryPolicy(budget_seconds=5, base_delay=0.02, requests_per_second=None)

Answer = tuple[int, dict[str, str], bytes]


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stub: Stub = self.server.stub
        status, headers, answer = stub.next(json.loads(body))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Stub(BackgroundHTTPServer):
    """Answers the scripted (status, headers, body) in turn, then getSlot's 7; keeps the
    arrival time and the JSON-RPC method of every request."""

    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        super().__init__(_Stub, name="stub", wait_for_requests=False, stub=self)

    def next(self, request: dict[str, Any]) -> Answer:
        with self.lock:
            self.arrivals.append((time.monotonic(), str(request.get("method"))))
            if self.script:
                return self.script.pop(0)
        return 200, {"Content-Type": "application/json"}, json.dumps(SLOT).encode()


@pytest.fixture
def localnet() -> Iterator[LocalnetServer]:
    with LocalnetServer() as server:
        yield server


async def test_429_with_retry_after_is_honoured() -> None:
    with Stub((429, {"Retry-After": "1"}, b"slow down")) as stub:
        async with retrying_client([stub.url], FAST) as client:
            assert (await client.get_slot()).value == 7
    (first, _), (second, method) = stub.arrivals
    assert method == "getSlot"
    assert second - first >= 1.0  # the retry waited as told, not the 20 ms backoff


async def test_retry_after_as_an_http_date_and_its_cap() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=3), usegmt=True), now) == 3
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("soon") is None
    capped = RetryPolicy(budget_seconds=5, retry_after_cap=0.3, requests_per_second=None)
    with Stub((429, {"Retry-After": "3600"}, b"")) as stub:
        async with retrying_client([stub.url], capped) as client:
            started = time.monotonic()
            assert (await client.get_slot()).value == 7
            assert time.monotonic() - started < 2  # an hour was cut to the cap
    assert len(stub.arrivals) == 2


async def test_failover_to_the_second_url_when_the_first_refuses_connections() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with Stub() as stub:
        async with retrying_client([dead, stub.url], FAST) as client:
            assert (await client.get_slot()).value == 7
            assert (await client.get_slot()).value == 7
            transport = client._provider.session._transport
            # The refusing endpoint is tried once, then rests: the next call goes straight on.
            assert transport.attempts == 3
            assert transport.endpoints[0].last.startswith("refused the connection")
    assert len(stub.arrivals) == 2


async def test_giving_up_names_each_endpoint_what_it_answered_and_the_attempts() -> None:
    dead = f"http://127.0.0.1:{free_port()}/?api-key=SECRET-KEY"
    busy = [(503, {}, b"unavailable")] * 1000
    policy = RetryPolicy(budget_seconds=1.0, base_delay=0.05, requests_per_second=None)
    with Stub(*busy) as stub:
        url = stub.url
        async with retrying_client([url, dead], policy) as client:
            with pytest.raises(RpcUnavailable) as raised:
                await client.get_balance(Keypair().pubkey())
    message = str(raised.value)
    answered = len(stub.arrivals)
    assert answered >= 2
    assert f"RPC getBalance failed after {answered * 2 - 1}" in message or (
        f"RPC getBalance failed after {answered * 2}" in message
    )
    assert f"endpoint 1 ({url}) answered HTTP 503 ({answered} attempts)" in message
    assert "endpoint 2 (http://127.0.0.1:" in message and "refused the connection" in message
    assert "SECRET-KEY" not in message  # paths and queries hold API keys
    assert "rpc_urls" in message
    assert [e[0] for e in raised.value.endpoints] == [
        f"endpoint 1 ({url})",
        f"endpoint 2 (http://127.0.0.1:{dead.split(':')[2].split('/')[0]})",
    ]


async def test_the_rate_limit_spaces_each_endpoints_requests() -> None:
    policy = RetryPolicy(budget_seconds=5, requests_per_second=10)
    with Stub() as stub:
        async with retrying_client([stub.url], policy) as client:
            for _ in range(25):
                await client.get_slot()
    times = [t for t, _ in stub.arrivals]
    # A burst of 10 (one second's worth), then one every 0.1 s.
    assert times[-1] - times[0] >= 1.4
    # Never more than the burst plus 10 a second in any window (one of slack for timing).
    for i, j in itertools.combinations(range(len(times)), 2):
        assert j - i + 1 <= 10 + 10 * (times[j] - times[i]) + 1, (i, j)
    with pytest.raises(InputError, match="positive"):
        TokenBucket(0)


async def test_a_json_rpc_error_and_a_4xx_are_not_retried() -> None:
    error = {"jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params"}, "id": 0}
    with Stub(
        (200, {"Content-Type": "application/json"}, json.dumps(error).encode()),
        (400, {}, b"bad request"),
    ) as stub:
        async with retrying_client([stub.url], FAST) as client:
            with pytest.raises(RPCException, match="Invalid params"):
                await client.get_slot()
            with pytest.raises(RpcRefused, match=r"getSlot: endpoint 1 .* HTTP 400 Bad Request"):
                await client.get_slot()
    assert len(stub.arrivals) == 2  # each asked once


async def test_a_resent_transaction_that_had_landed_is_confirmed_not_failed(
    localnet: LocalnetServer,
) -> None:
    """The proxy forwards the send, then drops the answer: the policy resends, the chain
    answers AlreadyProcessed, and send_and_confirm confirms the one landed transaction."""
    net = localnet.localnet
    payer, to = Keypair(), Keypair()
    net.airdrop(payer.pubkey(), 10**9)
    landed: list[str] = []
    execute = net.send_transaction

    def counting(tx: Any, **kwargs: Any) -> Any:
        outcome = execute(tx, **kwargs)
        if outcome.landed:
            landed.append(str(tx.signatures[0]))
        return outcome

    net.send_transaction = counting  # type: ignore[method-assign]
    with FaultProxy(localnet.url, fault_rate=0, seconds=30) as proxy:
        async with retrying_client([proxy.url], FAST) as client:
            await client.get_slot()
            # The simulation and getLatestBlockhash pass, the send's answer is dropped.
            proxy.queue(None, None, "drop_after")
            ix = transfer(
                TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=10**7)
            )
            no_fee = send.SendOptions(max_priority_fee=0)
            signature = await send.send_and_confirm(client, [ix], payer, options=no_fee)
    assert proxy.counts["drop_after"] == 1
    assert landed == [str(signature)]  # sent twice, landed once
    assert net.get_balance(to.pubkey()) == 10**7
    status = net.signature_status(signature)
    assert status is not None and status.err is None


async def test_many_calls_through_the_proxy_at_40_percent_all_succeed(
    localnet: LocalnetServer,
) -> None:
    with FaultProxy(
        localnet.url, fault_rate=0.4, seconds=60, seed=3, delay_seconds=0.05, retry_after="0"
    ) as proxy:
        async with retrying_client([proxy.url], FAST) as client:
            slots = [(await client.get_slot()).value for _ in range(150)]
    assert len(slots) == 150
    assert all(proxy.counts[f] > 0 for f in FAULTS), proxy.counts


def test_the_proxy_is_seeded_loopback_only_and_stops_by_itself(localnet: LocalnetServer) -> None:
    with pytest.raises(InputError, match="not a loopback address"):
        FaultProxy(localnet.url, fault_rate=0.2, seconds=5, host="0.0.0.0")
    with pytest.raises(InputError, match="must stop"):
        FaultProxy(localnet.url, fault_rate=0.2, seconds=0)
    with pytest.raises(InputError, match="between 0 and 1"):
        FaultProxy(localnet.url, fault_rate=1.5, seconds=5)

    def picks(seed: int) -> list[str | None]:
        proxy = FaultProxy(localnet.url, fault_rate=0.5, seconds=5, seed=seed)
        return [proxy.choose() for _ in range(50)]

    assert picks(1) == picks(1) != picks(2)

    proxy = FaultProxy(localnet.url, fault_rate=0, seconds=0.5).start()
    url = proxy.url
    body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
    assert httpx.post(url, json=body, timeout=5).json()["result"] >= 0
    assert proxy.counts["forwarded"] == 1
    assert proxy.stopped.wait(timeout=5)
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json=body, timeout=5)


def test_the_proxy_command_refuses_a_public_address_and_runs_bounded(
    localnet: LocalnetServer,
) -> None:
    cmd = [sys.executable, "-m", "localnet.fault_proxy", "--upstream", localnet.url]
    refused = subprocess.run(
        [*cmd, "--host", "0.0.0.0"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2
    assert "not a loopback address" in refused.stderr and "Traceback" not in refused.stderr
    ran = subprocess.run(
        [*cmd, "--seconds", "1", "--fault-rate", "0.3", "--seed", "4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    url, counts = ran.stdout.splitlines()[:2]
    assert url.startswith("http://127.0.0.1:") and counts == "{}"
