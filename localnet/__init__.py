"""A Solana localnet: a JSON-RPC server on 127.0.0.1 backed by one ``LiteSVM``.

Programs run in a real SVM (the real BPF loaders, real sBPF programs, real signature
checks), and clients talk to it with ``solana.rpc.async_api.AsyncClient`` exactly as
they would to devnet or mainnet, for the RPC methods the runbooks use.

It is a localnet, not a validator: there is no gossip, no consensus, no vote, no
leader schedule, no websocket subscriptions. Each landed transaction gets a slot of its
own and every slot is final at once ("finalized", whatever commitment is asked for).
The clock follows wall time (plus an optional offset for tests). See ``chain`` for the
slot, blockhash and preflight rules; ``server`` is the HTTP side, ``methods`` the RPC
methods.

Asked to, it behaves like a cluster instead (``cluster_mode.ClusterBehaviour``;
``python -m localnet --cluster-like``): slots on a clock, sent transactions landing a slot
or two later or dropped, statuses going processed → confirmed → finalized, blockhashes
expiring, a request rate limit answered with 429 and capped getProgramAccounts answers.

    from localnet import Localnet, LocalnetServer

    with LocalnetServer(port=0) as server:
        server.localnet.airdrop(pubkey, 10**9)
        client = AsyncClient(server.url)

Or from a shell: ``python -m localnet --port 8899 --program <ID>=path/to/program.so``.

``Localnet.clone_from(url, accounts=..., programs=...)`` (``--url`` with ``--clone`` and
``--clone-upgradeable-program``) copies accounts and upgradeable programs from a cluster
first, as ``solana-test-validator`` does; ``RUNBOOKS_SQUADS_SO`` loads a Squads v4 binary
at the Squads program id (``localnet.clone``).
"""

from localnet.chain import LandedTransaction, Localnet, SignatureStatus, TxOutcome
from localnet.cluster_mode import ClusterBehaviour
from localnet.errors import (
    LocalnetTransactionError,
    PreflightFailure,
    SignatureVerificationFailure,
)
from localnet.server import LocalnetServer

__all__ = [
    "ClusterBehaviour",
    "LandedTransaction",
    "Localnet",
    "LocalnetServer",
    "LocalnetTransactionError",
    "PreflightFailure",
    "SignatureStatus",
    "SignatureVerificationFailure",
    "TxOutcome",
]
