"""Which Solana cluster a runbook talks to."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field


class SolanaCluster(Block):
    """A Solana cluster: its JSON-RPC endpoints and, where there is one, an explorer."""

    _block_type_name = "Solana Cluster"
    _block_type_slug = "solana-cluster"
    _description = (
        "JSON-RPC endpoints and explorer of a Solana cluster (localnet, devnet, mainnet)."
    )

    cluster: str = Field(
        default="localnet",
        title="Cluster name",
        description="localnet, devnet, testnet or mainnet-beta; recorded with every action.",
    )
    rpc_urls: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8899"],
        title="RPC endpoints",
        description=(
            "JSON-RPC URLs; requests go to the first, and to the next when one fails "
            "(429, 5xx, dropped connection, timeout)."
        ),
        min_length=1,
    )
    requests_per_second: float | None = Field(
        default=40.0,
        gt=0,
        title="Requests per second per endpoint",
        description=(
            "A rate limit each endpoint's requests are spaced to (a token bucket); "
            "empty for none. Public Solana endpoints allow about 10."
        ),
    )
    rpc_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        title="RPC retry budget (seconds)",
        description=(
            "How long one RPC request is retried across the endpoints before the task "
            "fails (and is retried by its own policy)."
        ),
    )
    explorer_url: str | None = Field(
        default=None,
        title="Explorer URL template",
        description=(
            "An address page with {address} in it, e.g. "
            "https://explorer.solana.com/address/{address}?cluster=devnet. "
            "Empty for a localnet."
        ),
    )
    commitment: str = Field(default="confirmed", title="Commitment")

    def explorer_link(self, address: str) -> str | None:
        return self.explorer_url.format(address=address) if self.explorer_url else None
