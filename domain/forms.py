"""Labels for the deployments' Run forms, carried by each flow's own signature.

Prefect 3.8.8 builds a deployment's parameter schema from the flow's signature
(``prefect.utilities.callables.parameter_schema``), the same way for ``prefect deploy``,
``flow.serve`` and ``prefect.serve``: each parameter's help is its entry in the Google-style
``Args:`` section of the flow's docstring, but its title is the bare parameter name
(``prefect._internal.pydantic.v2_schema.process_v2_params`` passes ``title=param.name``,
which overrides ``Field(title=...)``). A ``json_schema_extra`` title in the annotation's
metadata is written into the schema after that, so :func:`titled_form` puts one there for
each parameter: every way of registering a deployment then sends readable titles, with
no step after it and nothing of Prefect's patched. Validation is untouched (pydantic
validates calls from ``__annotations__``; only ``__signature__`` is rewritten).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import Field
from pydantic.fields import FieldInfo

F = TypeVar("F", bound=Callable[..., Any])

# Words a plain capitalisation would spell wrong.
WORDS = {"id": "ID", "sha256": "SHA-256", "rpc": "RPC", "url": "URL", "utc": "UTC"}


def title(name: str) -> str:
    """``program_pause_block`` -> ``Program pause block``; ``program_id`` -> ``Program ID``."""
    words = [WORDS.get(w, w) for w in name.split("_") if w]
    if not words:
        return name
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def _has_title(annotation: Any) -> bool:
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, FieldInfo):
            extra = meta.json_schema_extra
            if isinstance(extra, dict) and extra.get("title"):
                return True
    return False


def titled_form(fn: F) -> F:
    """Title each parameter of ``fn`` in its signature; put it under ``@flow``.

    A parameter already titled (``Annotated[..., Field(json_schema_extra={"title": ...})]``)
    keeps its own.
    """
    # The flows use postponed annotations: resolve them here, where the module's names are
    # known (Prefect's eval_str is skipped once a __signature__ is set).
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise TypeError(
            f"@titled_form on {fn.__qualname__}: an annotation does not resolve ({exc}); "
            "import the names its parameters use at module level, not under TYPE_CHECKING"
        ) from exc
    signature = inspect.signature(fn)
    parameters = []
    for parameter in signature.parameters.values():
        annotation = hints.get(parameter.name, Any)
        if not _has_title(annotation):
            field = Field(json_schema_extra={"title": title(parameter.name)})
            annotation = Annotated[annotation, field]
        parameters.append(parameter.replace(annotation=annotation))
    returns = hints.get("return", signature.return_annotation)
    fn.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=returns
    )
    return fn


def unlabelled(schema: dict[str, Any]) -> dict[str, str]:
    """The parameters of a deployment's parameter schema whose form field would show a
    bare name or no help, each with what it lacks (empty: every field is labelled)."""
    lacking: dict[str, str] = {}
    for name, prop in (schema.get("properties") or {}).items():
        label = str(prop.get("title") or "").strip()
        if not label or label == name:
            lacking[name] = f"title {prop.get('title')!r} (the bare name or none)"
        elif not str(prop.get("description") or "").strip():
            lacking[name] = "no help (an Args: entry in the flow's docstring)"
    return lacking
