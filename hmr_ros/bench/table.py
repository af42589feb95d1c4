"""Markdown tables: the one renderer of the benchmarks' tables (`bench adapt`, `flow`, `gpu`,
`scopes`, `tto`), so every report spells rows and rules the same way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table_row(cells: Sequence[object]) -> str:
    """One row, `| a | b |`; an empty cell is a single blank (`| | p50 |`)."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a table: the header row, the rule (`---` per column), one line per row.

    header: n column titles; rows: rows of n cells (formatted text, or values shown by str).
    """
    return [table_row(header), "|" + "---|" * len(header)] + [table_row(r) for r in rows]
