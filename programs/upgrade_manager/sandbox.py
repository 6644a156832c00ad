"""A LiteSVM with upgrade_manager loaded, a governance, and a program it manages.

For tests and benchmarks (no RPC, no Prefect). The managed program (demo_vault v1 by
default) is deployed through the real upgradeable loader and its upgrade authority
handed to the governance's authority PDA with SetAuthority, the one-time step an
operator does with ``solana program set-upgrade-authority <program> --new-upgrade-authority
<authority PDA> --skip-new-upgrade-authority-signer-check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from solders.clock import Clock
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import InstructionErrorCustom, TransactionErrorInstructionError

from core.approval import STANDARD, Action, SignedForm
from programs import loader
from programs.toolchain.build import build_program
from programs.upgrade_manager import client
from programs.upgrade_manager.client import Governance, GovernanceConfig, Proposal

START_TIME = 1_700_000_000  # LiteSVM's clock starts at 0; a realistic time catches sign bugs
SOL = 1_000_000_000
# getGenesisHash of the public clusters: a LiteSVM has no genesis of its own, so a sandbox
# governance is made for one of these (mainnet unless a test says otherwise).
MAINNET_GENESIS = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"
DEVNET_GENESIS = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"


def manager_so() -> bytes:
    return build_program(client.BUILD_NAME).read_bytes()


def vault_so(version: int) -> bytes:
    return build_program(f"demo_vault/v{version}").read_bytes()


@dataclass
class Sent:
    """What a transaction did: success or its error, logs and compute units."""

    ok: bool
    logs: list[str]
    error: object | None
    compute_units: int

    @property
    def custom_code(self) -> int | None:
        """The custom error code of the failed instruction, if it failed with one."""
        if isinstance(self.error, TransactionErrorInstructionError) and isinstance(
            self.error.err, InstructionErrorCustom
        ):
            return self.error.err.code
        return None

    @property
    def failed_instruction(self) -> int | None:
        if isinstance(self.error, TransactionErrorInstructionError):
            return self.error.index
        return None

    def consumed_by(self, program: Pubkey) -> list[int]:
        """Compute units ``program``'s top-level invocations logged, in order."""
        prefix = f"Program {program} consumed "
        return [
            int(line[len(prefix) :].split()[0]) for line in self.logs if line.startswith(prefix)
        ]


@dataclass
class Sandbox:
    svm: LiteSVM
    payer: Keypair
    members: list[Keypair]
    create_key: Keypair
    program: Pubkey = field(default_factory=Pubkey.default)

    # ------------------------------------------------------------------ sending

    def send(self, instructions: Sequence[Instruction], *signers: Keypair) -> Sent:
        others = [s for s in signers if s.pubkey() != self.payer.pubkey()]
        message = Message(list(instructions), self.payer.pubkey())
        tx = Transaction([self.payer, *others], message, self.svm.latest_blockhash())
        out = self.svm.send_transaction(tx)
        # Identical transactions later on must not be refused as AlreadyProcessed.
        self.svm.expire_blockhash()
        if isinstance(out, FailedTransactionMetadata):
            meta = out.meta()
            return Sent(False, list(meta.logs()), out.err(), meta.compute_units_consumed())
        return Sent(True, list(out.logs()), None, out.compute_units_consumed())

    def ok(self, instructions: Sequence[Instruction], *signers: Keypair) -> Sent:
        sent = self.send(instructions, *signers)
        if not sent.ok:
            raise AssertionError(f"transaction failed: {sent.error}\n" + "\n".join(sent.logs))
        return sent

    def data(self, address: Pubkey) -> bytes:
        account = self.svm.get_account(address)
        if account is None:
            raise AssertionError(f"no account {address}")
        return bytes(account.data)

    # ------------------------------------------------------------------ addresses

    @property
    def governance(self) -> Pubkey:
        return client.governance_address(self.create_key.pubkey())

    @property
    def authority(self) -> Pubkey:
        return client.authority_address(self.governance)

    def proposal_account(self, index: int) -> Pubkey:
        return client.proposal_address(self.governance, index)

    # ------------------------------------------------------------------ state

    def gov(self) -> Governance:
        return Governance.decode(self.data(self.governance))

    def proposal(self, index: int) -> Proposal:
        return Proposal.decode(self.data(self.proposal_account(index)))

    def now(self) -> int:
        return self.svm.get_clock().unix_timestamp

    def set_time(self, unix_timestamp: int) -> None:
        c = self.svm.get_clock()
        self.svm.set_clock(
            Clock(c.slot, c.epoch_start_timestamp, c.epoch, c.leader_schedule_epoch, unix_timestamp)
        )

    def next_slot(self) -> None:
        """Upgrades in the slot of the last deploy/upgrade fail; move on one slot."""
        self.svm.warp_to_slot(self.svm.get_clock().slot + 1)

    # ------------------------------------------------------------------ loader

    def write_buffer(
        self, so: bytes, *, to_pda: bool = True, buffer: Keypair | None = None
    ) -> Pubkey:
        """A buffer holding ``so``; its authority handed to the authority PDA if ``to_pda``."""
        buffer = buffer or Keypair()
        payer = self.payer.pubkey()
        size = loader.BUFFER_METADATA_SIZE + len(so)
        rent = self.svm.minimum_balance_for_rent_exemption(size)
        self.ok(loader.create_buffer(payer, buffer.pubkey(), payer, rent, len(so)), buffer)
        for offset, chunk in loader.write_chunks(so):
            self.ok([loader.write(buffer.pubkey(), payer, offset, chunk)])
        if to_pda:
            self.ok([loader.set_authority(buffer.pubkey(), payer, self.authority)])
        return buffer.pubkey()

    def deploy_managed(self, so: bytes, max_len: int) -> Pubkey:
        """Deploy ``so`` through the loader and make the authority PDA its upgrade authority."""
        program = Keypair()
        payer = self.payer.pubkey()
        buffer = self.write_buffer(so, to_pda=False)
        rent = self.svm.minimum_balance_for_rent_exemption(loader.PROGRAM_ACCOUNT_SIZE)
        self.ok(
            loader.deploy_program(payer, program.pubkey(), buffer, payer, rent, max_len), program
        )
        programdata = loader.programdata_address(program.pubkey())
        self.ok([loader.set_authority(programdata, payer, self.authority)])
        self.next_slot()
        self.program = program.pubkey()
        return self.program

    def programdata(self) -> loader.ProgramData:
        state = loader.decode_state(self.data(loader.programdata_address(self.program)))
        assert isinstance(state, loader.ProgramData)
        return state

    # ------------------------------------------------------------------ proposals

    def propose_upgrade(
        self, buffer: Pubkey, *, emergency: bool = False, spill: Pubkey | None = None
    ) -> int:
        """Proposed by the payer (the governance's proposer); ``spill``: the payer's."""
        index = self.gov().proposal_count + 1
        digest = loader.buffer_hash(self.data(buffer))
        ix = client.propose_upgrade(
            self.governance,
            index,
            self.program,
            buffer,
            digest,
            self.payer.pubkey(),
            spill=spill,
            emergency=emergency,
        )
        self.ok([ix])
        return index

    def propose_config(self, config: GovernanceConfig) -> int:
        index = self.gov().proposal_count + 1
        self.ok([client.propose_config(self.governance, index, config, self.payer.pubkey())])
        return index

    def sign(
        self, member: Keypair, index: int, action: Action = "approve", form: SignedForm = STANDARD
    ) -> Signature:
        """``member``'s signature over proposal ``index``'s message, as `runbooks sign` makes it."""
        p = self.proposal(index)
        return member.sign_message(
            client.approval_envelope(self.governance, p, action, member.pubkey(), form)
        )

    def relay_instructions(
        self, index: int, member: Keypair, action: Action = "approve", form: SignedForm = STANDARD
    ) -> list[Instruction]:
        return client.relayed_vote_instructions(
            self.governance,
            self.proposal_account(index),
            self.proposal(index),
            member.pubkey(),
            self.sign(member, index, action, form),
            action,
            form=form,
        )

    def relay(
        self, index: int, member: Keypair, action: Action = "approve", form: SignedForm = STANDARD
    ) -> Sent:
        """A member's vote relayed by the payer: the member sends and pays nothing."""
        return self.send(self.relay_instructions(index, member, action, form))

    def approve_all(self, index: int, members: Sequence[Keypair] | None = None) -> None:
        proposal = self.proposal(index)
        count = self.gov().threshold_for(proposal.kind)
        for member in members if members is not None else self.members[:count]:
            self.ok(self.relay_instructions(index, member))

    def pass_timelock(self, index: int) -> None:
        executable_at = self.proposal(index).executable_at(self.gov())
        assert executable_at is not None, "the proposal is not approved"
        self.set_time(executable_at)

    def execute_upgrade(
        self, index: int, buffer: Pubkey | None = None, spill: Pubkey | None = None
    ) -> Sent:
        """Execute (sent by the payer) with the proposal's spill unless ``spill`` is given."""
        p = self.proposal(index)
        ix = client.execute_upgrade(
            self.governance,
            self.proposal_account(index),
            self.program,
            buffer or p.buffer,
            spill or p.spill,
        )
        return self.send([ix])


def new_sandbox(
    *,
    members: int = 5,
    threshold: int = 3,
    timelock: int = 86_400,
    emergency_threshold: int = 4,
    emergency_timelock: int = 600,
    managed_so: bytes | None = None,
    max_len: int | None = None,
    genesis: str = MAINNET_GENESIS,
) -> Sandbox:
    """upgrade_manager at its address, a governance (the payer its proposer), and
    demo_vault v1 managed by it.

    ``max_len`` is the managed program's ProgramData capacity (default 3x its size).
    """
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 1_000 * SOL)
    svm.add_program(client.PROGRAM_ID, manager_so())
    box = Sandbox(svm, payer, [Keypair() for _ in range(members)], Keypair())
    box.set_time(START_TIME)
    config = GovernanceConfig(
        tuple(m.pubkey() for m in box.members),
        threshold,
        timelock,
        emergency_threshold,
        emergency_timelock,
        proposer=payer.pubkey(),  # the operator's key proposes; members may too
    )
    create = client.create_governance(box.create_key.pubkey(), payer.pubkey(), config, genesis)
    box.ok([create], box.create_key)
    so = managed_so if managed_so is not None else vault_so(1)
    box.deploy_managed(so, max_len or 3 * len(so))
    return box
