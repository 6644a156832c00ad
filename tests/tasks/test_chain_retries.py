"""The chain tasks' retry predicate: the RPC policy giving up is transient, the chain's
verdicts are not."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from core.errors import ChainError, InputError, RpcRefused, RpcUnavailable
from tasks.chain import _retry_transport_only


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RpcUnavailable("RPC getSlot failed after 9 attempts"), True),
        (OSError("connection reset"), True),
        (ChainError("program is immutable"), False),
        (RpcRefused("HTTP 401"), False),
        (InputError("bad pubkey"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retried: bool) -> None:
    assert _retry_transport_only(None, None, Failed(data=error)) is retried
