"""The one table formatter of the reports and the CLI: a table as Markdown (GitHub pipe table) or as aligned plain
text for a terminal. Cells are anything `str()` takes; None is written "-"."""
from __future__ import annotations


def _text(cell) -> str:
    return "-" if cell is None else str(cell)


def markdown_table(header, rows) -> str:
    """A pipe table: `| a | b |`, then `|---|---|`, then one line per row. A "|" in a cell is escaped and a line
    break becomes `<br>`, so every cell stays in its column."""
    def line(cells) -> str:
        return "| " + " | ".join(_text(c).replace("|", "\\|").replace("\n", "<br>") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def text_table(rows, rule: bool = True) -> str:
    """Aligned columns for a terminal, two spaces apart, trailing blanks stripped; the first row is the header,
    underlined with dashes when `rule`."""
    cells = [[_text(c) for c in r] for r in rows]
    widths = [max(map(len, column)) for column in zip(*cells)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    if rule and lines:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
