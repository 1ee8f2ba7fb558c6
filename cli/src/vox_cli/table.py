"""One way to print a listing: JSON (`--json`), plain columns when piped, a table on a terminal.

Every listing command (`list`, `ps`, `search`, `voices`, `show`) hands its rows here, so the
rules hold everywhere: the first column (a model or voice name) is never cut or wrapped, as
`ollama list` never cuts one; when stdout is not a terminal the output is plain space-padded
columns that `grep`, `awk` and `cut` read line by line, with no colour codes and no width
limit; on a terminal only the last, free-text column wraps.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from typing import Any

Row = Sequence[str]


def print_json(data: Any) -> None:
    """`--json`: the server's own body, indented, for scripts and jq."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def plain(columns: Row, rows: Sequence[Row], *, header: bool = True) -> str:
    """Space-padded columns, one line per row; the last column is never padded."""
    lines = [list(columns), *(list(r) for r in rows)] if header else [list(r) for r in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])] + [line[-1]]
        out.append("   ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def print_rows(columns: Row, rows: Sequence[Row], *, header: bool = True) -> None:
    """A table on a terminal; plain columns otherwise. The first column is kept whole."""
    if not sys.stdout.isatty():
        sys.stdout.write(plain(columns, rows, header=header))
        return
    # rich only on a terminal: it costs ~60 ms to import, which piped listings never pay.
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, box=None, show_header=header)
    table.columns[0].no_wrap = True
    table.columns[0].overflow = "ignore"
    for column in table.columns[1:-1]:
        column.no_wrap = True
    table.columns[-1].overflow = "fold"
    for row in rows:
        table.add_row(*row)
    # Never narrower than the names: a narrow terminal folds long lines rather than rich
    # wrapping every cell into a column of words.
    width = shutil.get_terminal_size((100, 24)).columns
    console = Console(width=width)
    natural = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    if len(columns) > 1 and natural > width:
        # Only the free-text last column gives way; the others keep their natural width.
        console = Console(width=max(width, natural - _last_width(columns, rows) + 20))
    console.print(table)


def _last_width(columns: Row, rows: Sequence[Row]) -> int:
    return max([len(columns[-1]), *(len(r[-1]) for r in rows)])


def size(n: float) -> str:
    """Bytes in words: 1.2 MB (decimal units, as `ollama list` prints)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
