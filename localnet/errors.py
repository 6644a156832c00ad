"""Transaction errors as the localnet reports them.

Solana's RPC writes a failed transaction's error twice: as JSON (``{"InstructionError":
[0, {"Custom": 1}]}``) and as the human sentence of Agave's ``Display`` impl inside the
message ("Transaction simulation failed: Error processing Instruction 0: custom program
error: 0x1"). Clients and operators grep for those sentences, so they are reproduced
here for the errors a runbook can meet; rarer variants fall back to their name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction_status import TransactionErrorType, TransactionReturnData

from core.errors import TransactionFailed

# Agave's TransactionError Display strings (solana-transaction-error).
_TRANSACTION_ERRORS: dict[str, str] = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "CallChainTooDeep": "Loader call chain is too deep",
    "MissingSignatureForFee": "Transaction requires a fee but has no signature present",
    "InvalidAccountIndex": "Transaction contains an invalid account reference",
    "SignatureFailure": "Transaction did not pass signature verification",
    "InvalidProgramForExecution": "This program may not be used for executing instructions",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "TooManyAccountLocks": "Transaction locked too many accounts",
    "UnsupportedVersion": "Transaction version is unsupported",
    "InvalidWritableAccount": "Transaction loads a writable account that cannot be written",
    "MaxLoadedAccountsDataSizeExceeded": "Transaction exceeded max loaded accounts data size cap",
    "InvalidLoadedAccountsDataSizeLimit": (
        "LoadedAccountsDataSizeLimit set for transaction must be greater than 0."
    ),
    "UnbalancedTransaction": "Sum of account balances before and after transaction do not match",
}

# Agave's InstructionError Display strings (solana-instruction-error).
_INSTRUCTION_ERRORS: dict[str, str] = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "UnbalancedInstruction": "sum of account balances before and after instruction do not match",
    "ModifiedProgramId": "instruction illegally modified the program id of an account",
    "ExternalAccountLamportSpend": (
        "instruction spent from the balance of an account it does not own"
    ),
    "ExternalAccountDataModified": "instruction modified data of an account it does not own",
    "ReadonlyLamportChange": "instruction changed the balance of a read-only account",
    "ReadonlyDataModified": "instruction modified data of a read-only account",
    "DuplicateAccountIndex": "instruction contains duplicate accounts",
    "ExecutableModified": "instruction changed executable bit of an account",
    "RentEpochModified": "instruction modified rent epoch of an account",
    "NotEnoughAccountKeys": "insufficient account keys for instruction",
    "AccountDataSizeChanged": "program other than the account's owner changed the size of the "
    "account data",
    "AccountNotExecutable": "instruction expected an executable account",
    "AccountBorrowFailed": "instruction tries to borrow reference for an account which is "
    "already borrowed",
    "AccountBorrowOutstanding": "instruction left account with an outstanding borrowed reference",
    "DuplicateAccountOutOfSync": "instruction modifications of multiply-passed account differ",
    "InvalidError": "program returned invalid error code",
    "ExecutableDataModified": "instruction changed executable accounts data",
    "ExecutableLamportChange": "instruction changed the balance of an executable account",
    "ExecutableAccountNotRentExempt": "executable accounts must be rent exempt",
    "UnsupportedProgramId": "Unsupported program id",
    "CallDepth": "Cross-program invocation call depth too deep",
    "MissingAccount": "An account required by the instruction is missing",
    "ReentrancyNotAllowed": "Cross-program invocation reentrancy not allowed for this instruction",
    "MaxSeedLengthExceeded": "Length of the seed is too long for address generation",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "InvalidRealloc": "Failed to reallocate account data",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "PrivilegeEscalation": "Cross-program invocation with unauthorized signer or writable account",
    "ProgramEnvironmentSetupFailure": "Failed to create program execution environment",
    "ProgramFailedToComplete": "Program failed to complete",
    "ProgramFailedToCompile": "Program failed to compile",
    "Immutable": "Account is immutable",
    "IncorrectAuthority": "Incorrect authority provided",
    "AccountNotRentExempt": "An account does not have enough lamports to be rent-exempt",
    "InvalidAccountOwner": "Invalid account owner",
    "ArithmeticOverflow": "Program arithmetic overflowed",
    "UnsupportedSysvar": "Unsupported sysvar",
    "IllegalOwner": "Provided owner is not allowed",
    "MaxAccountsDataAllocationsExceeded": "Accounts data allocations exceeded the maximum "
    "allowed per transaction",
    "MaxAccountsExceeded": "Max accounts exceeded",
    "MaxInstructionTraceLengthExceeded": "Max instruction trace length exceeded",
    "BuiltinProgramsMustConsumeComputeUnits": "Builtin programs must consume compute units",
}


def error_json(err: TransactionErrorType) -> Any:
    """The error as Solana's RPC writes it (``"BlockhashNotFound"``, ``{"InstructionError":
    ...}``), produced by solders' own serializer."""
    return json.loads(RpcSimulateTransactionResult(err=err).to_json())["err"]


def _words(name: str) -> str:
    # Unknown variants still read as a sentence rather than CamelCase.
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _instruction_error(value: Any) -> str:
    if isinstance(value, str):
        return _INSTRUCTION_ERRORS.get(value, _words(value))
    (name, inner), *_ = value.items()
    if name == "Custom":
        return f"custom program error: {inner:#x}"
    if name == "BorshIoError":
        return f"Failed to serialize or deserialize account data: {inner}"
    return f"{_words(name)}: {inner}"


def describe(err: TransactionErrorType | None) -> str:
    """Agave's one-line description of a transaction error."""
    if err is None:
        return "success"
    value = error_json(err)
    if isinstance(value, str):
        return _TRANSACTION_ERRORS.get(value, _words(value))
    (name, inner), *_ = value.items()
    if name == "InstructionError":
        index, ix_err = inner
        return f"Error processing Instruction {index}: {_instruction_error(ix_err)}"
    if name == "InsufficientFundsForRent":
        return (
            f"Transaction results in an account ({inner['account_index']}) with insufficient "
            "funds for rent"
        )
    if name == "DuplicateInstruction":
        return f"Transaction contains a duplicate instruction ({inner}) that is not allowed"
    return f"{_words(name)}: {inner}"


class LocalnetTransactionError(TransactionFailed):
    """A transaction the localnet refused; ``err`` is Solana's error, ``logs`` the program
    logs. Read the logs to see which instruction failed and why, fix the transaction or
    the chain state, and send it again."""

    def __init__(
        self,
        message: str,
        *,
        err: TransactionErrorType | None = None,
        logs: list[str] | None = None,
        units_consumed: int = 0,
        return_data: TransactionReturnData | None = None,
    ) -> None:
        self.err = err
        self.units_consumed = units_consumed
        self.return_data = return_data
        super().__init__(message, logs)


class PreflightFailure(LocalnetTransactionError):
    """Simulation before sending failed (RPC error -32002); nothing was written."""


class SignatureVerificationFailure(LocalnetTransactionError):
    """A signature does not verify (RPC error -32003); nothing was written."""
