"""Labels for the deployments' Run forms.

Prefect 3.8.8 builds a deployment's parameter schema from the flow's signature
(``prefect.utilities.callables.parameter_schema``): each parameter's help is its entry in
the Google-style ``Args:`` section of the flow's docstring (or a pydantic ``Field`` used
as the default), but its title is always the bare parameter name
(``prefect._internal.pydantic.v2_schema.process_v2_params`` passes ``title=param.name``,
which overrides a title given in ``Annotated[..., Field(title=...)]``; that Field's
description is dropped too). The UI labels each field with its title, so the
deployments this project serves get a readable one derived from the name here, and their
help from the docstrings.
"""

from __future__ import annotations

from typing import Any

# Words a plain capitalisation would spell wrong.
WORDS = {"id": "ID", "sha256": "SHA-256", "rpc": "RPC", "url": "URL", "utc": "UTC"}


def title(name: str) -> str:
    """``program_pause_block`` -> ``Program pause block``; ``program_id`` -> ``Program ID``."""
    words = [WORDS.get(w, w) for w in name.split("_") if w]
    if not words:
        return name
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def with_form_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with each parameter titled (help, types and defaults untouched)."""
    properties = {
        name: {**prop, "title": title(name)} if prop.get("title") in (None, name) else prop
        for name, prop in (schema.get("properties") or {}).items()
    }
    return {**schema, "properties": properties}


def title_deployment(deployment: Any) -> Any:
    """Title the Run form of a RunnerDeployment (``flow.to_deployment``) before serving."""
    # RunnerDeployment keeps the schema it sends in a private field and offers no setter.
    schema = deployment._parameter_openapi_schema
    deployment._parameter_openapi_schema = type(schema)(**with_form_titles(schema.model_dump()))
    return deployment
