"""The one table formatter of the reports and the CLI: a table as Markdown (GitHub pipe table) or as aligned plain
text for a terminal. Cells are anything `str()` takes; None is written "-"."""
from __future__ import annotations

import textwrap


def _text(cell) -> str:
    return "-" if cell is None else str(cell)


def markdown_table(header, rows) -> str:
    """A pipe table: `| a | b |`, then `|---|---|`, then one line per row. A "|" in a cell is escaped and a line
    break becomes `<br>`, so every cell stays in its column."""
    def line(cells) -> str:
        return "| " + " | ".join(_text(c).replace("|", "\\|").replace("\n", "<br>") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def text_table(rows, rule: bool = True, width: int | None = None) -> str:
    """Aligned columns for a terminal, two spaces apart, trailing blanks stripped; the first row is the header,
    underlined with dashes when `rule`. With `width`, the widest columns are narrowed (down to 8 characters) until a
    line fits in `width` characters, and their cells wrap onto more lines."""
    cells = [[_text(c) for c in r] for r in rows]
    widths = [max(map(len, column)) for column in zip(*cells)]
    if width is None:
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
        if rule and lines:
            lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
    gaps = 2 * (len(widths) - 1)
    # narrow the widest column first, but keep every column's longest word whole while any other column can give
    floors = [max(8, max((len(w) for c in column for w in c.split()), default=0)) for column in zip(*cells)]
    for floor in (floors, [8] * len(widths)):
        while widths and sum(widths) + gaps > width:
            i = max(range(len(widths)), key=lambda j: widths[j] - floor[j])
            if widths[i] <= floor[i]:
                break
            widths[i] -= 1
    lines = []
    for k, r in enumerate(cells):
        wrapped = [textwrap.wrap(c, w, break_on_hyphens=False) or [""] for c, w in zip(r, widths)]
        for j in range(max(map(len, wrapped))):
            lines.append("  ".join((col[j] if j < len(col) else "").ljust(w)
                                   for col, w in zip(wrapped, widths)).rstrip())
        if k == 0 and rule:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
