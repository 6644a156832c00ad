"""The ``runbooks`` command: sign a proposal, run the localnet, the demo or the console."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.settings import apply_defaults
from localnet.cli import add_cluster_options

if TYPE_CHECKING:
    from solders.keypair import Keypair

    from programs.upgrade_manager.client import Governance, Proposal


def _sign(args: argparse.Namespace) -> int:
    from core import approval
    from core.errors import InputError
    from core.keys import load_keypair

    # Bad input is named before any key is read: an empty --message is a message, not
    # "no message" (it once fell through to "proposal None").
    if args.message is not None:
        message = args.message.strip()
        approval.check_approval_line(message)  # a truncated paste is named, not signed
    if args.proposal is not None and args.proposal < 1:
        raise InputError(
            f"--proposal {args.proposal}: a proposal id is a positive number; copy it from "
            "the pause form"
        )
    keypair = load_keypair(args.keypair)
    if args.onchain_proposal:
        return _sign_onchain(args, keypair)
    if args.message is None:
        from flows._signoff import signing_subject
        from store.records.proposals import get_proposal
        from tasks.records import records_engine

        proposal = get_proposal(records_engine(), args.proposal)
        if proposal is None:
            raise InputError(
                f"proposal {args.proposal}: not in the records database; check the id in the "
                "pause form and that DATABASE_URL points at the runbooks' database"
            )
        message = signing_subject(proposal).message(args.action)
    print(f"message:   {message}")
    _print_signature(args, keypair, message)
    return 0


def _print_signature(args: argparse.Namespace, keypair: Keypair, message: str) -> None:
    """The pubkey, the envelope signed and the signature, in the form the member picked:
    standard (as Agave 3.x `solana sign-offchain-message` signs: zero application domain,
    the key as the one signer) or, with ``--legacy``, the Agave 1.18/2.x header."""
    from core import approval

    form = approval.LEGACY if args.legacy else approval.STANDARD
    signed = approval.envelope(message, keypair.pubkey(), form)
    print(f"pubkey:    {keypair.pubkey()}")
    print(f"envelope:  {form.envelope}")
    if args.print_envelope:
        # The exact bytes signed, to compare with what the member's own tool signs.
        print(f"bytes:     {signed.hex()}")
    print(f"signature: {approval.sign(keypair, message, form=form)}")


def _sign_onchain(args: argparse.Namespace, keypair: Keypair) -> int:
    """Sign from the proposal's on-chain account: no records database needed."""
    import asyncio

    from core.errors import InputError, ProposalClosed
    from core.keys import parse_pubkey
    from domain.governance import closed_status, decisions, onchain_approval_line
    from programs.rpc_transport import retrying_client

    if not args.url:
        raise InputError("--onchain-proposal needs --url: the cluster's RPC URL (in the form)")
    address = parse_pubkey(args.onchain_proposal, "--onchain-proposal")

    async def read() -> tuple[str, Governance, Proposal]:
        async with retrying_client([args.url]) as client:
            return await onchain_approval_line(client, address, args.action)

    message, governance, proposal = asyncio.run(read())
    me = keypair.pubkey()
    if me not in governance.members:
        raise InputError(
            f"{me} (from {args.keypair}) is not a member of governance {proposal.governance}; "
            "sign with your member keypair"
        )
    closed = closed_status(proposal)
    if closed is not None:
        raise ProposalClosed(f"on-chain proposal {proposal.index} is {closed}; nothing to sign")
    approved = sum(1 for d in decisions(governance, proposal).values() if d == "approve")
    print(f"proposal:  {proposal.index} ({proposal.kind.name.lower()}, {address})")
    print(f"approvals: {approved} of {governance.threshold_for(proposal.kind)}")
    print(f"message:   {message}")
    _print_signature(args, keypair, message)
    return 0


def _localnet(args: argparse.Namespace) -> int:
    from localnet.cli import main as localnet_main

    return localnet_main(args.rest)


def _build(args: argparse.Namespace) -> int:
    from programs.toolchain.build import main as build_main

    return build_main(args.rest)


def _bench(args: argparse.Namespace) -> int:
    import subprocess

    # A process of its own: benches/ stands above runbooks/ (it drives the demo chain),
    # so the command runs it rather than importing it.
    return subprocess.call([sys.executable, "-m", "benches", *args.rest])


def _slack_handler(args: argparse.Namespace) -> int:
    from runbooks.slack_handler import main as handler_main

    return handler_main(args.rest)


# Commands that pass every argument on to a front door with its own parser and --help.
_DOORS: dict[str, Callable[[argparse.Namespace], int]] = {
    "localnet": _localnet,
    "build": _build,
    "bench": _bench,
    "slack-handler": _slack_handler,
}


def _demo(args: argparse.Namespace) -> int:
    from runbooks.prefect_api import start_prefect_api

    behaviour = args.behaviour
    start_prefect_api()  # a first start migrates Prefect's database: before the localnet
    if args.scenario != "upgrade":
        from runbooks.demo_migration import main as migration_demo

        return migration_demo(args.scenario, behaviour)
    from runbooks.demo import main as demo_main

    return demo_main(behaviour)


def _up(args: argparse.Namespace) -> int:
    from runbooks.up import main as up_main

    return up_main(args.behaviour, workers=args.workers, prefect_database=args.prefect_database)


def _metrics(args: argparse.Namespace) -> int:
    from core.errors import InputError
    from runbooks.metrics import configured_address, endpoint_url, serve
    from store.db import database_url

    default_host, default_port = configured_address()
    host = args.host or default_host
    port = default_port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is not a port number; give one in 0-65535 (0: any free)")
    database_url()  # a DATABASE_URL naming no database is refused before serving
    try:
        server, thread = serve(host, port)
    except OSError as exc:
        print(
            f"runbooks metrics: cannot listen on {host}:{port} ({exc.strerror}); "
            "choose another --port",
            file=sys.stderr,
        )
        return 2
    print(f"Prometheus metrics: {endpoint_url(server, host)}  (Ctrl-C stops)", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]  # type: ignore[no-any-return]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runbooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sign = commands.add_parser(
        "sign",
        help="sign a proposal's approval message with your own keypair file",
        description="Prints the message, your pubkey and the signature to paste into the "
        "paused run's Resume form, signed in the standard off-chain message envelope as "
        "`solana sign-offchain-message` of Agave 3.x signs it (--legacy: as 1.18/2.x). "
        "The keypair never leaves this machine.",
    )
    what = sign.add_mutually_exclusive_group(required=True)
    what.add_argument("--proposal", type=int, help="proposal id (shown in the pause form)")
    what.add_argument("--message", help="sign this exact approval message instead")
    what.add_argument(
        "--onchain-proposal",
        metavar="ADDRESS",
        help="the on-chain proposal account (onchain backend): the message is rebuilt from "
        "the chain, no records database needed; with --url",
    )
    sign.add_argument("--url", help="RPC URL of the cluster (with --onchain-proposal)")
    sign.add_argument("--keypair", required=True, help="your Solana keypair file")
    sign.add_argument(
        "--action",
        choices=["approve", "reject", "cancel"],
        default="approve",
        help="what your signature says (default: approve)",
    )
    sign.add_argument(
        "--legacy",
        action="store_true",
        help="sign the legacy off-chain envelope of Agave 1.18/2.x CLIs instead of the "
        "standard one (Agave 3.x CLI, Ledger, @solana/kit); both are accepted",
    )
    sign.add_argument(
        "--print-envelope",
        action="store_true",
        help="also print the exact bytes signed (hex), to compare with your own tool",
    )
    sign.set_defaults(run=_sign)

    from runbooks.squads import add_parser as add_squads

    add_squads(commands)

    localnet = commands.add_parser(
        "localnet", help="run the embedded localnet (JSON-RPC over LiteSVM)", add_help=False
    )
    localnet.add_argument("rest", nargs=argparse.REMAINDER)
    localnet.set_defaults(run=_localnet)

    # The other front doors pass their arguments on (each has its own --help).
    for name, run, what in (
        ("build", _build, "build the on-chain programs from C (cached by source hash)"),
        ("bench", _bench, "run the benchmarks, or the named ones"),
        ("slack-handler", _slack_handler, "serve Slack's button clicks (see docs/slack.md)"),
    ):
        door = commands.add_parser(name, help=what, add_help=False)
        door.add_argument("rest", nargs=argparse.REMAINDER)
        door.set_defaults(run=run)

    demo = commands.add_parser("demo", help="the upgrade runbook end to end on a localnet")
    demo.add_argument(
        "--scenario",
        choices=["upgrade", "migration", "rollback"],
        default="upgrade",
        help="upgrade (default); migration: upgrade, then migrate and verify 1,000 accounts; "
        "rollback: that, then the emergency rollback and the kill switch",
    )
    add_cluster_options(demo)
    demo.set_defaults(run=_demo)

    up = commands.add_parser(
        "up", help="localnet + Prefect server and UI (127.0.0.1:4200) + served deployments"
    )
    add_cluster_options(up)
    up.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the deployments on the `runbooks` process work pool with this many "
        "workers (`prefect deploy --all` + `prefect worker start`), as in production; "
        "0 (default): serve them from this process",
    )
    up.add_argument(
        "--prefect-database",
        metavar="URL",
        help="the Prefect server's PostgreSQL (postgresql+asyncpg://user:pass@host/db); "
        "default: Prefect's SQLite under PREFECT_HOME",
    )
    up.set_defaults(run=_up)

    metrics = commands.add_parser(
        "metrics",
        help="serve the records' figures for Prometheus (/metrics)",
        description="Proposal counts, sign-off times, runbook success rates and migration "
        "throughput, read from the records database (DATABASE_URL) at every scrape.",
    )
    metrics.add_argument(
        "--host", help="address to listen on (default RUNBOOKS_METRICS_HOST, else 127.0.0.1)"
    )
    metrics.add_argument(
        "--port", type=int, help="port (default RUNBOOKS_METRICS_PORT, else 9464; 0: any free)"
    )
    metrics.set_defaults(run=_metrics)
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_defaults()
    from core.errors import RunbookError

    argv = list(sys.argv[1:] if argv is None else argv)
    door = _DOORS.get(argv[0]) if argv else None
    if door is not None:
        # argparse cannot pass a remainder that starts with an option (`localnet --help`,
        # `localnet --port 0`) through a subcommand: hand these over before it parses.
        args = argparse.Namespace(command=argv[0], rest=argv[1:], run=door)
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command in ("demo", "up"):
            from localnet.cli import cluster_behaviour

            # The parser of the subcommand names the option in its usage line.
            args.behaviour = cluster_behaviour(args, _subparser(parser, args.command))
    try:
        return args.run(args)
    except RunbookError as exc:
        print(f"runbooks {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
