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
    │   ├── TransactionFailed
    │   ├── RpcUnavailable    every RPC endpoint kept failing (transient: tasks retry it)
    │   └── RpcRefused        an endpoint refused the request (a 4xx other than 429)
    ├── HashMismatch          a verifiable-build hash is not the expected one
    ├── ApprovalError         a sign-off was refused
    │   ├── NotAMember
    │   ├── DuplicateApproval
    │   ├── InvalidSignature
    │   └── ProposalClosed    cancelled, rejected or executed already
    ├── TimelockActive        execution attempted before the timelock ran out
    ├── KillSwitchEngaged     the kill switch is on: no runbook writes
    ├── RecordsError          the records database refused or is unreachable
    ├── NotifyError           Slack failed (never fatal to a runbook; logged)
    ├── MigrationError        a migration could not finish
    │   └── VerificationFailed  migrated accounts do not match their snapshots
    ├── RollbackRefused       the rollback target cannot read accounts already migrated
    ├── HealthCheckFailed     the daily health check found something critical
    ├── BackupError           a backup or restore step failed
    ├── BuildError            a C program could not be compiled or linked
    │   └── LinkError         the objects do not link into a loadable sBPF v0 program
    ├── ConsoleError          a run did not reach the state an operator action needs
    └── SlackRequestRejected  a request to the Slack handler is not a genuine, fresh one
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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


class RpcUnavailable(ChainError):
    """The retry policy gave up: every endpoint kept answering 429/5xx, dropping the
    connection or timing out. Transient, unlike the rest of ``ChainError``: a task retries
    it. ``endpoints`` holds (endpoint, what it answered last, attempts) each."""

    def __init__(self, message: str, endpoints: Sequence[tuple[str, str, int]] = ()) -> None:
        self.endpoints = list(endpoints)
        super().__init__(message)


class TransactionExpired(ChainError):
    """A sent transaction's blockhash expired before it landed: it never can now.
    Transient: the task retries, reads the chain first, and signs anew."""


class RpcRefused(ChainError):
    """An endpoint answered a 4xx other than 429 (a wrong URL or API key, a request it will
    never take): the same request would be refused again."""


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


class MigrationError(RunbookError):
    """A migration could not finish; the message says which accounts and what next."""


class VerificationFailed(MigrationError):
    """Migrated accounts do not match their snapshots; ``accounts`` maps them to why."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = dict(accounts)
        shown = "; ".join(f"{a}: {why}" for a, why in list(self.accounts.items())[:10])
        more = f" (and {len(self.accounts) - 10} more)" if len(self.accounts) > 10 else ""
        super().__init__(
            f"{len(self.accounts)} migrated accounts do not match their snapshots: {shown}{more}. "
            "Stop writes to the program (kill switch) and investigate before anything else."
        )


class RollbackRefused(RunbookError):
    """The rollback target cannot read accounts already migrated; ``accounts`` lists them."""

    def __init__(self, message: str, accounts: Sequence[str]) -> None:
        self.accounts = list(accounts)
        super().__init__(message)


class _Finding(Protocol):
    """What ``HealthCheckFailed`` reads of a finding (``domain.health.Finding``)."""

    @property
    def check(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def message(self) -> str: ...


class HealthCheckFailed(RunbookError):
    """The health check found something critical; the message lists every critical finding."""

    def __init__(self, findings: Sequence[_Finding]) -> None:
        self.findings = list(findings)
        super().__init__(
            f"{len(self.findings)} critical finding(s): "
            + "; ".join(f"[{f.check}] {f.subject}: {f.message.rstrip('.')}" for f in self.findings)
            + ". See the run's health table and act on each before the next run."
        )


class BackupError(RunbookError):
    """A backup or restore step failed; the message says which and what to check."""


class BuildError(RunbookError):
    """A program could not be compiled or linked; the message says what to fix."""


class LinkError(BuildError):
    """The objects cannot be linked into a loadable sBPF v0 program."""


class ConsoleError(RunbookError):
    """The run did not reach the state an operator action needs."""


class SlackRequestRejected(RunbookError):
    """The request is not a genuine, fresh Slack request we understand."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)
