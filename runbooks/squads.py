"""``runbooks squads approve``: a member votes on a Squads v4 proposal with a keypair file
or a Ledger (``--keypair usb://ledger[?key=N]``, ``programs.ledger``).

The chain is read first (the Multisig and the Proposal), so a vote the program would
refuse — not a member, no Vote permission, a proposal not open to this vote — is refused
here with the reason, before anything is signed or sent. ``--print-only`` prints the
transaction (base64) instead of sending it, for air-gapped signing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from core.errors import InputError
from programs import ledger
from programs.send import Signer, sign_transaction
from programs.squads import client as squads
from programs.squads.reads import read_multisig, read_proposal

LEDGER_PREFIX = "usb://"
# How a Ledger is reached: USB HID through hidapi; tests put a stand-in device here.
ledger_device: Callable[[], ledger.ReportDevice] = ledger.open_hid
DEFAULT_URL = "http://127.0.0.1:8899"

# Which proposal status each vote needs (the program's own rule).
_NEEDS = {"approve": "Active", "reject": "Active", "cancel": "Approved"}
_BUILDERS = {
    "approve": squads.proposal_approve,
    "reject": squads.proposal_reject,
    "cancel": squads.proposal_cancel,
}
_VOTED = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}


@dataclass(frozen=True)
class Vote:
    """What the command is asked to do, parsed and checked before the chain is read."""

    action: str
    multisig: Pubkey
    transaction_index: int
    memo: str | None


def refusal(
    multisig: squads.Multisig,
    proposal: squads.Proposal | None,
    member: Pubkey,
    vote: Vote,
) -> str | None:
    """Why the program would refuse this vote, or None; checked before anything is signed."""
    who = multisig.member(member)
    if who is None:
        return f"{member} is not a member of multisig {vote.multisig}; vote with your member key"
    if not who.can(squads.Permission.VOTE):
        return (
            f"{member} is a member of multisig {vote.multisig} without the Vote permission "
            f"(permissions mask {who.permissions}); only voting members can {vote.action}"
        )
    if proposal is None:
        return (
            f"multisig {vote.multisig} has no proposal for transaction {vote.transaction_index} "
            f"(its last transaction is {multisig.transaction_index}); check the index"
        )
    status = proposal.status.kind
    if status != _NEEDS[vote.action]:
        return (
            f"proposal {vote.transaction_index} is {status}; {vote.action} needs it "
            f"{_NEEDS[vote.action]}"
        )
    if vote.action != "cancel" and vote.transaction_index <= multisig.stale_transaction_index:
        return (
            f"proposal {vote.transaction_index} is stale (the multisig's config changed after "
            f"it, stale index {multisig.stale_transaction_index}); it can no longer be voted on"
        )
    if member in getattr(proposal, _VOTED[vote.action]):
        return f"{member} has already {_VOTED[vote.action]} proposal {vote.transaction_index}"
    return None


def vote_instruction(vote: Vote, member: Pubkey) -> Instruction:
    return _BUILDERS[vote.action](
        multisig=vote.multisig,
        transaction_index=vote.transaction_index,
        member=member,
        memo=vote.memo,
    )


def _parse(args: argparse.Namespace) -> Vote:
    from core.keys import parse_pubkey

    if args.reject and args.cancel:
        raise InputError("--reject and --cancel: choose one vote")
    action = "reject" if args.reject else "cancel" if args.cancel else "approve"
    if args.transaction_index < 1:
        raise InputError(
            f"--transaction-index {args.transaction_index}: Squads numbers transactions from 1; "
            "copy it from the proposal's link or the runbook's message"
        )
    memo = args.memo if args.memo else None
    return Vote(action, parse_pubkey(args.multisig, "--multisig"), args.transaction_index, memo)


@contextlib.contextmanager
def _signer(args: argparse.Namespace) -> Iterator[tuple[Keypair | Signer | None, Pubkey]]:
    """The member's signer — a keypair file or a key on a Ledger (None for an unsigned
    print) — and public key; a Ledger is closed when the vote is done."""
    from core.keys import load_keypair, parse_pubkey

    keypair_arg = args.keypair or ""
    if args.member and keypair_arg:
        raise InputError("--member and --keypair: give one (--member only prints, unsigned)")
    if args.signed and not args.print_only:
        raise InputError("--signed goes with --print-only (without it the vote is sent signed)")
    if args.member:
        if args.signed:
            raise InputError("--signed needs --keypair: --member alone cannot sign")
        if not args.print_only:
            raise InputError(
                "--member signs nothing: it needs --print-only (to sign elsewhere); "
                "give --keypair to send"
            )
        yield None, parse_pubkey(args.member, "--member")
        return
    if not keypair_arg:
        raise InputError("--keypair: your member keypair file (or --member with --print-only)")
    if keypair_arg.startswith(LEDGER_PREFIX):
        locator = ledger.parse_locator(keypair_arg)  # refused before the device is opened
        with ledger.connect(locator, ledger_device(), prompt=print) as device_key:
            print(f"signer:    Ledger {locator.path_text}")
            yield device_key, device_key.pubkey()
        return
    keypair = load_keypair(keypair_arg)
    yield keypair, keypair.pubkey()


def transaction(
    ix: Instruction, member: Pubkey, blockhash: Hash, signer: Keypair | Signer | None
) -> str:
    """The vote as a base64 legacy transaction paid by the member; signed when a signer
    is given (a Ledger's signature checked over the message first), else with an empty
    signature slot for the member's own signer to fill."""
    if signer is not None:
        return base64.b64encode(
            bytes(sign_transaction([ix], member, {member: signer}, blockhash))
        ).decode()
    message = Message.new_with_blockhash([ix], member, blockhash)
    return base64.b64encode(bytes(Transaction.new_unsigned(message))).decode()


async def _run(args: argparse.Namespace, vote: Vote) -> int:
    with _signer(args) as (signer, member):
        return await _vote(args, vote, signer, member)


async def _vote(
    args: argparse.Namespace, vote: Vote, signer: Keypair | Signer | None, member: Pubkey
) -> int:
    from programs import send
    from programs.rpc_transport import retrying_client

    async with retrying_client([args.url]) as client:
        multisig = await read_multisig(client, vote.multisig)
        proposal = await read_proposal(client, vote.multisig, vote.transaction_index)
        why = refusal(multisig, proposal, member, vote)
        if why is not None:
            raise InputError(why)
        ix = vote_instruction(vote, member)
        print(f"multisig:  {vote.multisig}")
        address = squads.proposal_pda(vote.multisig, vote.transaction_index)[0]
        print(f"proposal:  {vote.transaction_index} ({address})")
        print(f"member:    {member}")
        print(f"vote:      {vote.action}")
        if args.print_only:
            blockhash = await _blockhash(client)
            signed = signer if args.signed else None
            wire = transaction(ix, member, blockhash, signed)  # a Ledger may refuse first
            print(f"signed:    {'yes' if signed else 'no'}")
            print(f"transaction: {wire}")
            return 0
        assert signer is not None  # _signer allows no signer only with --print-only
        # A Ledger signs inside: the loop waits on the device while the person confirms.
        signature = await send.send_and_confirm(client, [ix], signer)
        print(f"signature: {signature}")
        return 0


async def _blockhash(client: AsyncClient) -> Hash:
    return (await client.get_latest_blockhash()).value.blockhash


def approve(args: argparse.Namespace) -> int:
    vote = _parse(args)
    return asyncio.run(_run(args, vote))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    squads_cmd = commands.add_parser(
        "squads",
        help="vote on a Squads v4 proposal with your member keypair or Ledger",
        description="Squads v4 proposals: the runbook creates them; members vote.",
    )
    actions = squads_cmd.add_subparsers(dest="squads_command", required=True)
    cmd = actions.add_parser(
        "approve",
        help="approve (or --reject, --cancel) a proposal of a Squads multisig",
        description="Reads the Multisig and the Proposal, checks that you are a member with "
        "the Vote permission and that the proposal is open to this vote (Active to approve or "
        "reject, Approved to cancel), then signs proposal_approve (reject, cancel) with your "
        "keypair file or Ledger and sends it. The keypair never leaves this machine.",
    )
    cmd.add_argument("--multisig", required=True, metavar="ADDRESS", help="the multisig account")
    cmd.add_argument(
        "--transaction-index", required=True, type=int, metavar="N", help="the proposal's index"
    )
    cmd.add_argument(
        "--keypair",
        metavar="PATH",
        help="your member keypair file, or usb://ledger[?key=N[/M]] for a key on a Ledger "
        "(the Solana app open; needs the hidapi package: the `ledger` extra)",
    )
    cmd.add_argument(
        "--member",
        metavar="PUBKEY",
        help="with --print-only and no keypair: the member whose unsigned vote to print",
    )
    cmd.add_argument("--url", default=DEFAULT_URL, help=f"RPC URL (default {DEFAULT_URL})")
    vote = cmd.add_mutually_exclusive_group()
    vote.add_argument("--reject", action="store_true", help="vote to reject instead")
    vote.add_argument("--cancel", action="store_true", help="vote to cancel an Approved proposal")
    cmd.add_argument("--memo", help="a memo stored with the vote")
    cmd.add_argument(
        "--print-only",
        action="store_true",
        help="print the transaction (base64) instead of sending it; unsigned unless --signed",
    )
    cmd.add_argument(
        "--signed", action="store_true", help="with --print-only: sign it with --keypair"
    )
    cmd.set_defaults(run=approve)
