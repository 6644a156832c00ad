"""Which Solana cluster a runbook talks to."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from prefect.blocks.core import Block
from pydantic import Field, field_validator

COMMITMENTS = ("processed", "confirmed", "finalized")


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
    max_priority_fee_micro_lamports: int = Field(
        default=100_000,
        ge=0,
        le=100_000_000,
        title="Priority fee cap (micro-lamports per compute unit)",
        description=(
            "Writes pay the 75th percentile of recent prioritization fees of the accounts "
            "they write (getRecentPrioritizationFees), at most this; 0 pays none."
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

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        # Recorded with every action and part of every proposal key.
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", value):
            raise ValueError(
                f"cluster name {value[:40]!r} is not a lowercase name such as localnet, "
                "devnet or mainnet-beta; write it that way"
            )
        return value

    @field_validator("rpc_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parsed = urlsplit(url.strip())
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(
                    f"RPC endpoint {url[:80]!r} is not an http(s) URL with a host; write "
                    "each as https://host[:port][/path]"
                )
        return [url.strip() for url in value]

    @field_validator("explorer_url")
    @classmethod
    def _explorer(cls, value: str | None) -> str | None:
        if value and "{address}" not in value:
            raise ValueError(
                "explorer URL template has no {address} in it; add it where the address "
                "goes, or leave the field empty"
            )
        return value or None

    @field_validator("commitment")
    @classmethod
    def _commitment(cls, value: str) -> str:
        if value not in COMMITMENTS:
            raise ValueError(
                f"commitment {value[:20]!r} is not one of {', '.join(COMMITMENTS)}; choose one"
            )
        return value

    def explorer_link(self, address: str) -> str | None:
        return self.explorer_url.format(address=address) if self.explorer_url else None
