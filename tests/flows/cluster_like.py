"""The cluster-like chain the flow tests also run against: slots on a clock, landing a
slot or two late, 10 % of sends dropped, a request limit, and a short finalization lag
so a run stays short. The cluster blocks commit at "confirmed" (their default)."""

from __future__ import annotations

import pytest

from localnet.cluster_mode import ClusterBehaviour

CLUSTER_LIKE = ClusterBehaviour(
    slot_seconds=0.2,
    finalization_lag_slots=4,
    drop_fraction=0.1,
    # Present, and above what one run asks (the sign-off loop polls; writes resend).
    requests_per_second=300.0,
    seed=12,
)


def on(db_url: str, behaviour: ClusterBehaviour | None) -> object:
    """A ``("db_url", "behaviour")`` case with a readable id."""
    return pytest.param(db_url, behaviour, id=f"{db_url}-{'cluster' if behaviour else 'instant'}")
