"""Every deployment's Run form labels and explains each parameter.

Checked on what each way of registering sends as parameter_openapi_schema, from which
the UI draws the form: Prefect's own ``parameter_schema(flow)`` (what `prefect deploy`
sends) and the runner deployments `make up` serves (runbooks.up.load_deployments). The
schemas read back from a real Prefect server are checked in test_schedules_fire.py (served)
and test_housekeeping_deployments.py (`prefect deploy --all`).
"""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any

import pytest
import yaml
from prefect import flow
from prefect.exceptions import ParameterTypeError
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from pydantic import Field

from core.settings import REPO_ROOT
from domain.forms import title, titled_form, unlabelled
from runbooks.up import PREFECT_YAML, load_deployments

ENTRIES = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
DEPLOYMENTS = load_deployments()


def untitled_parameter_schema(fn: Any) -> dict[str, Any]:
    """What Prefect derives from the same function without @titled_form."""
    bare = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    bare.__kwdefaults__ = fn.__kwdefaults__
    bare.__annotations__ = fn.__annotations__
    bare.__doc__ = fn.__doc__
    return parameter_schema(bare).model_dump()


def entry_flow(entry: dict[str, Any]) -> Flow[..., Any]:
    return load_flow_from_entrypoint(str(REPO_ROOT / entry["entrypoint"]))


def test_every_flow_in_prefect_yaml_is_checked() -> None:
    names = {entry["name"] for entry in ENTRIES}
    assert {"upgrade", "daily", "weekly", "restore", "rotate", "review", "register"} <= names
    assert {"monthly", "migrate", "kill-switch", "rollback"} <= names
    assert {d.name for d in DEPLOYMENTS} == names


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["name"])
def test_prefect_deploy_schema_titles_and_explains_every_parameter(
    entry: dict[str, Any],
) -> None:
    """`prefect deploy` sends parameter_schema(flow): no step of ours after it."""
    deployed = entry_flow(entry)
    schema = parameter_schema(deployed).model_dump()
    # A schema that lost its parameters would pass vacuously.
    assert set(schema["properties"]) == set(inspect.signature(deployed.fn).parameters)
    missing = unlabelled(schema)
    assert not missing, f"{entry['name']}: parameters without a title or help: {missing}"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_served_schema_is_the_deployed_one(deployment: Any) -> None:
    """`make up` serves the same form as `prefect deploy` registers."""
    served = deployment._parameter_openapi_schema.model_dump()
    deployed = load_flow_from_entrypoint(str(REPO_ROOT / deployment.entrypoint))
    assert served == parameter_schema(deployed).model_dump()
    assert not unlabelled(served)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["name"])
def test_titles_change_labels_only(entry: dict[str, Any]) -> None:
    """Names, types, defaults, constraints, help and positions stay Prefect's own."""
    deployed = entry_flow(entry)
    titled = parameter_schema(deployed).model_dump()
    prefect_own = untitled_parameter_schema(deployed.fn)
    assert titled["required"] == prefect_own["required"]
    assert titled.get("definitions") == prefect_own.get("definitions")
    for name, prop in prefect_own["properties"].items():
        assert prop["title"] == name  # what Prefect 3.8.8 puts there by itself
        assert titled["properties"][name]["title"] == title(name)
        assert {k: v for k, v in titled["properties"][name].items() if k != "title"} == {
            k: v for k, v in prop.items() if k != "title"
        }


@flow
@titled_form
def sample(
    program_id: str,
    count: Annotated[int, Field(ge=1)] = 2,
    label: Annotated[str, Field(json_schema_extra={"title": "Display name"})] = "",
) -> int:
    """Sample.

    Args:
        program_id: The program.
        count: How many.
        label: Shown to people.
    """
    return count


def test_titled_form_keeps_a_title_given_and_validation() -> None:
    schema = parameter_schema(sample).model_dump()
    titles = {name: prop["title"] for name, prop in schema["properties"].items()}
    assert titles == {"program_id": "Program ID", "count": "Count", "label": "Display name"}
    assert schema["properties"]["count"]["minimum"] == 1
    assert schema["required"] == ["program_id"]
    # The constraint still refuses a bad value, naming the parameter.
    with pytest.raises(ParameterTypeError, match="count"):
        sample.validate_parameters({"program_id": "x", "count": 0})
    assert sample.validate_parameters({"program_id": "x", "count": "3"})["count"] == 3
    assert sample.fn("x") == 2  # a direct call is untouched


def test_an_annotation_that_does_not_resolve_is_named() -> None:
    def runbook(cluster_block: NoSuchBlock) -> None:  # noqa: F821
        """Doc."""

    with pytest.raises(TypeError, match=r"runbook.*NoSuchBlock.*not under TYPE_CHECKING"):
        titled_form(runbook)
    assert not hasattr(runbook, "__signature__")  # left as it was


def test_unlabelled_names_what_each_field_lacks() -> None:
    schema = {
        "properties": {
            "program_id": {"title": "Program ID", "description": "The program."},
            "role": {"title": "role", "description": "Its role."},
            "pubkey": {"description": "The key."},
            "action": {"title": "Action", "description": " "},
        }
    }
    assert unlabelled(schema) == {
        "role": "title 'role' (the bare name or none)",
        "pubkey": "title None (the bare name or none)",
        "action": "no help (an Args: entry in the flow's docstring)",
    }
    assert unlabelled({"properties": {}}) == {}


def test_title() -> None:
    assert title("program_pause_block") == "Program pause block"
    assert title("expected_sha256") == "Expected SHA-256"
    assert title("program_id") == "Program ID"
    assert title("rpc_url") == "RPC URL"
