"""The metrics dashboard as markdown: tables of the figures and unicode bar charts.

Prefect's UI renders a markdown artifact's tables and code blocks; bars drawn with block
characters in a code block line up in its monospace font, with no image to host.
"""

from __future__ import annotations

from collections.abc import Sequence

from store.metrics import Durations, RecordsMetrics
from store.models import PROPOSAL_STATUSES

BAR_WIDTH = 24
FULL, EMPTY = "█", "░"
# Eighths of a block, for bars whose length is not a whole number of cells.
PARTIAL = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``fraction`` (0..1) of ``width`` cells, to the eighth of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    cells = FULL * full + (PARTIAL[rest] if rest else "")
    return cells + EMPTY * (width - len(cells))


def chart(rows: Sequence[tuple[str, float, str]], *, scale: float | None = None) -> str:
    """A bar chart in a code block: one ``(label, value, shown)`` per line.

    Bars are relative to ``scale`` (default: the largest value).
    """
    if not rows:
        return ""
    top = scale if scale is not None else max(value for _, value, _ in rows)
    width = max(len(label) for label, _, _ in rows)
    lines = [
        f"{label.ljust(width)}  {bar(value / top if top > 0 else 0.0)}  {shown}"
        for label, value, shown in rows
    ]
    return "```\n" + "\n".join(lines) + "\n```"


def duration(seconds: float | None) -> str:
    """``95`` -> ``1m 35s``: readable at a glance, to the second."""
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit} {(s % size) // sub_size}{sub}"
    return f"{s // 60}m {s % 60:02d}s"


def short(pubkey: str) -> str:
    """``9WzD…AWWM``: enough to tell members apart on a chart line."""
    return pubkey if len(pubkey) <= 12 else f"{pubkey[:4]}…{pubkey[-4:]}"


def percent(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.0f}%"


def render(m: RecordsMetrics) -> str:
    """The whole dashboard: proposals, times, sign-offs, runbook success, migrations."""
    out = [f"# Runbook metrics, {m.at:%Y-%m-%d %H:%M} UTC", ""]

    out += ["## Proposals by kind and status", ""]
    kinds = sorted({kind for kind, _ in m.proposals})
    if kinds:
        statuses = [s for s in PROPOSAL_STATUSES if any((k, s) in m.proposals for k in kinds)]
        out.append("| Kind | " + " | ".join(statuses) + " | Total |")
        out.append("|---|" + "---:|" * (len(statuses) + 1))
        for kind in kinds:
            counts = [m.proposals.get((kind, s), 0) for s in statuses]
            out.append(f"| {kind} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    else:
        out.append("No proposal recorded.")

    out += ["", "## Time from proposal to threshold and to execution", ""]
    timed = sorted(set(m.time_to_threshold) | set(m.time_to_execution))
    if timed:
        out.append(
            "| Kind | Met threshold | Mean to threshold | Slowest | Executed | "
            "Mean to execution | Slowest |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for kind in timed:
            t = m.time_to_threshold.get(kind, Durations())
            e = m.time_to_execution.get(kind, Durations())
            out.append(
                f"| {kind} | {t.count} | {duration(t.mean_seconds)} | "
                f"{duration(t.max_seconds if t.count else None)} | {e.count} | "
                f"{duration(e.mean_seconds)} | {duration(e.max_seconds if e.count else None)} |"
            )
    else:
        out.append("No proposal has met its threshold yet.")

    out += ["", "## Sign-off latency per member (accepted approve/reject)", ""]
    if m.signoff_latency:
        members = sorted(m.signoff_latency.items())
        out += ["| Member | Sign-offs | Mean | Slowest |", "|---|---:|---:|---:|"]
        for member, d in members:
            out.append(
                f"| `{member}` | {d.count} | {duration(d.mean_seconds)} | "
                f"{duration(d.max_seconds)} |"
            )
        out += [
            "",
            "Mean latency:",
            "",
            chart(
                [
                    (short(member), d.mean_seconds or 0.0, duration(d.mean_seconds))
                    for member, d in members
                ]
            ),
        ]
    else:
        out.append("No sign-off recorded.")

    out += ["", "## Runbook success rate", ""]
    if m.runbooks:
        out += [
            "| Runbook | Succeeded | Failed | Outcomes | Success rate |",
            "|---|---:|---:|---|---:|",
        ]
        for r in m.runbooks.values():
            outcomes = ", ".join(f"{o} {n}" for o, n in r.outcomes.items())
            out.append(
                f"| {r.runbook} | {r.succeeded} | {r.failed} | {outcomes} | "
                f"{percent(r.success_ratio)} |"
            )
        rated = [r for r in m.runbooks.values() if r.success_ratio is not None]
        if rated:
            out += [
                "",
                chart(
                    [
                        (
                            r.runbook,
                            r.success_ratio or 0.0,
                            f"{percent(r.success_ratio):>4}  ({r.succeeded} of "
                            f"{r.succeeded + r.failed})",
                        )
                        for r in rated
                    ],
                    scale=1.0,
                ),
            ]
        out += [
            "",
            "Succeeded / (succeeded + failed). Proposals: executed vs failed (cancelled and "
            "rejected are decisions); migration: completed vs incomplete or failed; backup: "
            "verified vs failed; health: reports without vs with a critical finding.",
        ]
    else:
        out.append("No finished runbook run recorded.")

    out += ["", "## Migration throughput", ""]
    if m.migrations:
        out += [
            "| Run | Program | Migrator | Status | Accounts migrated | Elapsed | Accounts/s |",
            "|---:|---|---|---|---:|---:|---:|",
        ]
        for run in m.migrations:
            rate = run.accounts_per_second
            out.append(
                f"| {run.migration_id} | `{short(run.program_id)}` | {run.migrator} | "
                f"{run.status} | {run.accounts_migrated} | {duration(run.elapsed_seconds)} | "
                f"{'–' if rate is None else f'{rate:.2f}'} |"
            )
        rated_runs = [r for r in m.migrations if r.accounts_per_second is not None]
        if rated_runs:
            out += [
                "",
                chart(
                    [
                        (
                            f"run {r.migration_id}",
                            r.accounts_per_second or 0.0,
                            f"{r.accounts_per_second or 0.0:.2f} accounts/s",
                        )
                        for r in rated_runs
                    ]
                ),
            ]
    else:
        out.append("No migration recorded.")
    return "\n".join(out) + "\n"


__all__ = ["bar", "chart", "duration", "percent", "render", "short"]
