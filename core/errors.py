"""The one error tree of solana-runbooks.

Every error a runbook raises on purpose is a ``RunbookError``. Messages say what was
wrong and what the operator should do next; they never carry secrets (keypairs,
tokens, database passwords).

    RunbookError
    ├── InputError            bad input: a malformed pubkey, signature, file, parameter
    │   └── BlockNotFound     a block a runbook names does not exist (or does not load)
    ├── PolicyViolation       the multisig policy audit failed
    ├── ChainError            the chain said no, or is not in the state a step needs
    │   ├── AccountNotFound
    │   ├── NotABuffer        the account exists but is not a loader Buffer
    │   ├── AuthorityMismatch a buffer/program authority is not the expected one
    │   ├── ProgramImmutable  the program has no upgrade authority
    │   ├── ProgramDataTooSmall
    │   └── TransactionFailed
    ├── HashMismatch          a verifiable-build hash is not the expected one
    ├── ApprovalError         a sign-off was refused
    │   ├── NotAMember
    │   ├── DuplicateApproval
    │   ├── InvalidSignature
    │   └── ProposalClosed    cancelled, rejected or executed already
    ├── TimelockActive        execution attempted before the timelock ran out
    ├── KillSwitchEngaged     the kill switch is on: no runbook writes
    ├── RecordsError          the records database refused or is unreachable
    └── NotifyError           Slack failed (never fatal to a runbook; logged)
"""

from __future__ import annotations


class RunbookError(Exception):
    """Base of every error solana-runbooks raises on purpose."""


class InputError(RunbookError, ValueError):
    """Input that cannot be used as given; the message names the field and the fix."""


class BlockNotFound(InputError):
    """A runbook parameter names a Prefect block that does not exist or does not load.

    An ``InputError`` (so a ``ValueError``, as Prefect's own error is): callers that
    tolerate a missing optional block keep catching it.
    """


class PolicyViolation(RunbookError):
    """The multisig policy audit failed; ``findings`` lists every failed check."""

    def __init__(self, findings: list[str]) -> None:
        self.findings = list(findings)
        super().__init__(
            "policy audit failed: "
            + "; ".join(findings)
            + ". Fix the multisig policy block and start the run again."
        )


class ChainError(RunbookError):
    """The chain refused an action or is not in the state a step needs."""


class AccountNotFound(ChainError):
    pass


class NotABuffer(ChainError):
    pass


class AuthorityMismatch(ChainError):
    pass


class ProgramImmutable(ChainError):
    pass


class ProgramDataTooSmall(ChainError):
    def __init__(self, message: str, additional_bytes: int) -> None:
        self.additional_bytes = additional_bytes
        super().__init__(message)


class TransactionFailed(ChainError):
    def __init__(self, message: str, logs: list[str] | None = None) -> None:
        self.logs = list(logs or [])
        super().__init__(message)


class HashMismatch(RunbookError):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{what}: verifiable-build hash is {actual}, expected {expected}. "
            "Rebuild with solana-verify and write the buffer again, or correct the expected hash."
        )


class ApprovalError(RunbookError):
    """A sign-off was refused; ``reason`` is what the records keep."""


class NotAMember(ApprovalError):
    pass


class DuplicateApproval(ApprovalError):
    pass


class InvalidSignature(ApprovalError):
    pass


class ProposalClosed(ApprovalError):
    pass


class TimelockActive(RunbookError):
    def __init__(self, seconds_left: float) -> None:
        self.seconds_left = seconds_left
        super().__init__(
            f"the timelock has {seconds_left:.0f} s left; execute after it has run out"
        )


class KillSwitchEngaged(RunbookError):
    pass


class RecordsError(RunbookError):
    pass


class NotifyError(RunbookError):
    pass
