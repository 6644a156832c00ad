"""Every deployment's Run form labels and explains each parameter.

The deployments are loaded exactly as `make up` serves them (runbooks.up.load_deployments);
the schema checked is the one sent to the Prefect API, from which the UI draws the form.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from core.settings import REPO_ROOT
from runbooks.forms import title
from runbooks.up import load_deployments

DEPLOYMENTS = load_deployments()


def form_schema(deployment: Any) -> dict[str, Any]:
    # What RunnerDeployment sends as parameter_openapi_schema when it is served.
    return deployment._parameter_openapi_schema.model_dump(exclude_unset=True)


def test_every_flow_in_prefect_yaml_is_checked() -> None:
    names = {d.name for d in DEPLOYMENTS}
    assert {"upgrade", "daily", "weekly", "restore", "rotate", "review", "register"} <= names
    assert {"monthly", "migrate", "kill-switch", "rollback"} <= names


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_every_parameter_has_a_title_and_help(deployment: Any) -> None:
    properties = form_schema(deployment)["properties"]
    flow = load_flow_from_entrypoint(str(REPO_ROOT / deployment.entrypoint))
    # A schema that lost its parameters would pass vacuously.
    assert set(properties) == set(inspect.signature(flow.fn).parameters)
    missing = {
        name: prop
        for name, prop in properties.items()
        if not (prop.get("title") or "").strip()
        or prop["title"] == name
        or not (prop.get("description") or "").strip()
    }
    assert not missing, f"{deployment.name}: parameters without a title or help: {missing}"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_titles_change_labels_only(deployment: Any) -> None:
    """Names, types, defaults, help and positions stay what Prefect derives from the flow."""
    flow = load_flow_from_entrypoint(str(REPO_ROOT / deployment.entrypoint))
    prefect_own = parameter_schema(flow).model_dump()
    served = form_schema(deployment)
    assert served["required"] == prefect_own["required"]
    for name, prop in prefect_own["properties"].items():
        assert prop["title"] == name  # what Prefect 3.8.8 puts there by itself
        assert {k: v for k, v in served["properties"][name].items() if k != "title"} == {
            k: v for k, v in prop.items() if k != "title"
        }


def test_title() -> None:
    assert title("program_pause_block") == "Program pause block"
    assert title("expected_sha256") == "Expected SHA-256"
    assert title("program_id") == "Program ID"
