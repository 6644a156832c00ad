"""The markdown pieces every runbook report shares (Prefect artifacts, pause forms).

Plain Python: the flows put these lines into ``acreate_markdown_artifact`` or a form's
description.
"""

from __future__ import annotations

from collections.abc import Iterable


def fields_table(
    fields: Iterable[tuple[str, object]], header: tuple[str, object] | None = None
) -> list[str]:
    """A two-column markdown table of ``(label, value)`` rows. Its header is ``header``
    when given, else empty (the labels say what each value is)."""
    top = "| | |" if header is None else f"| {header[0]} | {header[1]} |"
    return [top, "|---|---|", *(f"| {label} | {value} |" for label, value in fields)]


def linked(value: str, link: str | None) -> str:
    """``value`` as code, followed by an explorer link when there is one."""
    return f"`{value}`" + (f" ([explorer]({link}))" if link else "")
