"""The repository the flows call: short transactions over the records database, one module
per runbook's records.

- ``proposals``      proposals, sign-offs, executions (every sign-off runbook)
- ``slack_threads``  the Slack thread each proposal opens
- ``audit``          the audit log
- ``health``         health reports and the last known program hashes
- ``migrations``     account migrations, their snapshots and outcomes
- ``archives``       program binaries kept to roll back to
- ``kill_switch``    the kill switches
- ``key_rotation``   the key registry and authority transfers
- ``backups``        backup sets
- ``housekeeping``   old proposals removed, old rows archived, stuck rows found

Callers import the module (``from store.records import proposals``, then
``proposals.record_proposal(...)``) and record types by name
(``from store.records.proposals import ProposalRecord``).

Conventions, for every function here:

- It takes an ``Engine`` and runs one transaction of its own. A function that changes
  state writes its ``AuditEvent`` in that same transaction: there is no change without
  its audit row, and no audit row for a change that rolled back.
- It returns records (``ProposalRecord``, ``ApprovalRecord``, ...: frozen pydantic models
  read from the row, ``_base.Record``), never ORM objects: they are plain values, safe to
  use after the session has closed, to pass between Prefect tasks and to compare in tests.
- Functions whose description says *idempotent* can be retried by a Prefect task: a retry
  returns what the first call recorded and writes nothing more (no second audit row).
  Inserts of that kind go through ``_base.insert_once``.
- Bad arguments raise ``InputError``; an unknown proposal, a conflicting idempotency key or
  a database failure raise ``RecordsError``; sign-off rules raise ``DuplicateApproval`` or
  ``ProposalClosed``.
- Datetimes in and out are timezone-aware; they are stored and returned in UTC.

Concurrency: rows that decide a rule (the proposal for approvals, status and execution;
the program hash row) are read ``FOR UPDATE`` on PostgreSQL; SQLite transactions start
with ``BEGIN IMMEDIATE`` (see ``store.db.create_engine``). Unique constraints back every
idempotency rule, so two racing runs cannot both write.
"""

from store.records._base import DEFAULT_ACTOR, program_subject

__all__ = ["DEFAULT_ACTOR", "program_subject"]
