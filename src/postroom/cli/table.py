"""Text tables of the CLI: columns as wide as their widest cell.

Fixed widths (`f"{name:40}"`) shift every later column as soon as one value is
longer than guessed; `table_lines` measures first. The last column is never
padded (no trailing blanks), and columns named in `right` are right-aligned
(numbers). Cells are `str()`-ed, and escaped when not printable (`shown`);
None shows as "-".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

GAP = "  "


def table_lines(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, right: Iterable[int] = ()
) -> list[str]:
    cells = [list(header)] + [
        ["-" if cell is None else shown(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    aligned_right = set(right)
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if column in aligned_right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        if len(header) - 1 not in aligned_right:
            parts[-1] = row[-1]
        lines.append(GAP.join(parts).rstrip())
    return lines


def shown(cell: object) -> str:
    """The cell as text; one that is not printable (a control character from an
    imported name or a rendered subject could move the cursor or rewrite the
    terminal) shows as its escaped repr."""
    text = str(cell)
    return text if text.isprintable() else repr(text)


def print_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, right: Iterable[int] = ()
) -> None:
    for line in table_lines(header, rows, right=right):
        print(line)
