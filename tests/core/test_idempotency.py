"""The idempotency keys are persisted with the proposals: restarted runs find their work
by them, so each runbook's key must stay exactly the string it has always been."""

from __future__ import annotations

from core.idempotency import NO_RUN, idempotency_key
from flows.key_rotation import rotation_key
from flows.kill_switch import release_key
from flows.migration import migration_key
from flows.rollback import rollback_key
from flows.upgrade import proposal_key

PROGRAM = "Prog1111111111111111111111111111111111111111"
HASH = "ab" * 32


def test_recipe_is_prefix_and_sha256_of_the_joined_parts() -> None:
    # sha256("upgrade|a|b") = c1e2d9a376d2e936627db49d517ac33d...
    assert idempotency_key("upgrade", "a", "b") == "upgrade-c1e2d9a376d2e936627db49d517ac33d"
    assert idempotency_key("kind", "x", prefix="p").startswith("p-")
    assert len(idempotency_key("kind", "x").removeprefix("kind-")) == 32
    assert NO_RUN == "no-run"


def test_each_runbook_keeps_its_persisted_key() -> None:
    assert proposal_key("localnet", PROGRAM, "Buf1", "run-1") == (
        "upgrade-7d70f93636db03ae5ce04e635bceace7"
    )
    assert proposal_key("localnet", PROGRAM, "Buf1", None) == (
        "upgrade-f05e4614a6aadf089dbfd60f9f315ca3"
    )
    assert rollback_key("localnet", PROGRAM, HASH, "run-1") == (
        "rollback-0733e3c7e735594962caafbc2d0d90f1"
    )
    assert rollback_key("localnet", PROGRAM, HASH, None) == (
        "rollback-35880a4b533556423cf39bff370f1fdf"
    )
    # Outside a flow run: the "no-run" key.
    assert release_key("localnet", PROGRAM) == "release-41df5692d5faed2c42e9048de8339039"
    assert rotation_key("localnet", PROGRAM, "New1", "run-1") == (
        "authority-fd030ba63da6399f2095a671ce863f26"
    )
    assert rotation_key("localnet", PROGRAM, None, None) == (
        "authority-08f5d2a24aa89658863e5f5285f679c3"
    )
    assert migration_key("localnet", PROGRAM, "demo_vault", 1, 2) == (
        "migration-fcc03b13e59881c1ea14ab092e3e9c8d"
    )
