"""The tables and failure lines `rag eval` prints: every name, question and quote as literal text."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rag.chunk import as_prose
from rag.terminal import one_line


def print_sets(out: Console, report, backend: str, split: str) -> None:  # type: ignore[no-untyped-def]
    from rag.evalsets import HEADLINE

    n = int(report.macro["n_items"] or 0)
    table = Table(title=f"rag eval — {backend} backend, {split} items of {len(report.reports)} sets ({n} items)")
    table.add_column("set")
    for name in (*HEADLINE, "n_items"):
        table.add_column(name.replace("_", " "), justify="right")

    def cells(metrics: dict) -> list[str]:  # type: ignore[type-arg]
        return ["n/a" if (v := metrics.get(m)) is None else f"{v:.3f}" for m in HEADLINE] + [
            str(int(metrics.get("n_items") or 0))]

    for name, r in report.reports.items():
        table.add_row(Text(one_line(name)), *cells(r.metrics))
    table.add_row(Text("macro average", style="bold"), *cells(report.macro))
    spread = report.spread
    table.add_row(Text("spread (best - worst)", style="bold"),
                  *[f"{spread[m]:.3f}" if m in spread else "" for m in HEADLINE], "")
    out.print(table)


def print_eval(out: Console, report, backend: str, time_s: float) -> None:  # type: ignore[no-untyped-def]
    failures = [r for r in report.items if not r.passed]
    for r in failures:
        out.print(Text.assemble(("FAIL", "bold red"), f" {r.id} {r.question} — {r.failure()}"))
        out.print(f"   expected: {r.expected_answers}"
                  + (f" from “{as_prose(r.expected_quotes[0])}”" if r.expected_quotes else ""))
        out.print(f"   answer:   {r.answer}")
        for c in r.citations:
            out.print(f"   cited:    [{c['n']}] {one_line(c['doc'])} “{as_prose(c['quote'])}”")
    table = Table(title=f"rag eval — {backend} backend, {len(report.items)} items, {time_s:.1f} s answering")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if report.spread:
        table.add_column("spread", justify="right")
    for name, value in report.metrics.items():
        row = [name, "n/a" if value is None else str(int(value)) if name == "n_items" else f"{value:.4f}"]
        if report.spread:
            row.append(f"±{report.spread[name]:.4f}" if name in report.spread else "")
        table.add_row(*row)
    out.print(table)
