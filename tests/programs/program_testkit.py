"""Test helpers for the on-chain programs: a LiteSVM with a payer, and send results.

A module of its own (not conftest) so test modules can import the types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import InstructionErrorCustom, TransactionErrorInstructionError


@dataclass
class Result:
    """What a sent transaction did: success or the instruction error, and the logs."""

    ok: bool
    logs: list[str]
    error: object | None

    @property
    def custom_code(self) -> int | None:
        """The program's custom error code, if it failed with one."""
        if isinstance(self.error, TransactionErrorInstructionError) and isinstance(
            self.error.err, InstructionErrorCustom
        ):
            return self.error.err.code
        return None

    def program_logs(self) -> list[str]:
        return [line.removeprefix("Program log: ") for line in self.logs if "Program log: " in line]


@dataclass
class Chain:
    """A LiteSVM with a funded payer; each send gets a fresh blockhash."""

    svm: LiteSVM
    payer: Keypair

    def send(self, instructions: Sequence[Instruction], *signers: Keypair) -> Result:
        others = [s for s in signers if s.pubkey() != self.payer.pubkey()]
        message = Message(list(instructions), self.payer.pubkey())
        tx = Transaction([self.payer, *others], message, self.svm.latest_blockhash())
        out = self.svm.send_transaction(tx)
        # Identical transactions later in a test must not be refused as AlreadyProcessed.
        self.svm.expire_blockhash()
        if isinstance(out, FailedTransactionMetadata):
            return Result(False, list(out.meta().logs()), out.err())
        assert isinstance(out, TransactionMetadata)
        return Result(True, list(out.logs()), None)

    def ok(self, instructions: Sequence[Instruction], *signers: Keypair) -> Result:
        result = self.send(instructions, *signers)
        assert result.ok, f"transaction failed: {result.error}\n" + "\n".join(result.logs)
        return result

    def data(self, address: Pubkey) -> bytes:
        account = self.svm.get_account(address)
        assert account is not None, f"no account {address}"
        return bytes(account.data)
