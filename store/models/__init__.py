"""The records schema: what every runbook did, for the on-call engineer and the auditors.

One module per runbook's tables, over ``base`` (``Base``, ``UTCDateTime``, ``utcnow`` and
the ``Audited`` mixin); this package's names are the public API. Importing it registers
every table on ``Base.metadata`` (the Alembic environment and the tests rely on that).

- ``proposals``     proposals, approvals, executions, Slack threads (Alembic ``0001``, ``0004``)
- ``audit``         the audit log
- ``health``        health reports and the last known program hashes
- ``migrations``    account migrations and their accounts (branch ``migration``)
- ``archives``      program binaries kept to roll back to
- ``kill_switch``   the kill switches
- ``key_rotation``  the key registry and authority transfers (branch ``operations``)
- ``backups``       backup sets
- ``housekeeping``  rows archived out of live tables
- ``transactions``  the write-ahead journal of chain writes (``0007``)
"""

from store.models.archives import ProgramArchive
from store.models.audit import AuditEvent
from store.models.backups import BACKUP_STATUSES, Backup
from store.models.base import Audited, Base, UTCDateTime, utcnow
from store.models.health import HEALTH_LEVELS, HealthReport, ProgramHash
from store.models.housekeeping import ArchivedRecord
from store.models.key_rotation import KEY_ROLES, KeyRotation, ManagedKey
from store.models.kill_switch import ALL_PROGRAMS, KillSwitch
from store.models.migrations import (
    ACCOUNT_STATUSES,
    MIGRATION_STATUSES,
    MigrationAccount,
    MigrationRun,
)
from store.models.proposals import (
    BACKENDS,
    DECISIONS,
    EXECUTION_OUTCOMES,
    PROPOSAL_STATUSES,
    TERMINAL_STATUSES,
    Approval,
    Execution,
    Proposal,
    SlackThread,
)
from store.models.transactions import TRANSACTION_STATUSES, ChainTransaction

__all__ = [
    "ACCOUNT_STATUSES",
    "ALL_PROGRAMS",
    "BACKENDS",
    "BACKUP_STATUSES",
    "DECISIONS",
    "EXECUTION_OUTCOMES",
    "HEALTH_LEVELS",
    "KEY_ROLES",
    "MIGRATION_STATUSES",
    "PROPOSAL_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSACTION_STATUSES",
    "Approval",
    "ArchivedRecord",
    "AuditEvent",
    "Audited",
    "Backup",
    "Base",
    "ChainTransaction",
    "Execution",
    "HealthReport",
    "KeyRotation",
    "KillSwitch",
    "ManagedKey",
    "MigrationAccount",
    "MigrationRun",
    "ProgramArchive",
    "ProgramHash",
    "Proposal",
    "SlackThread",
    "UTCDateTime",
    "utcnow",
]
