"""The report's page: the blocks a section is made of, and their rendering, once to HTML and once to Markdown,
through the Jinja2 templates in `reports/templates/` (`report.html.j2` autoescapes everything, `report.md.j2`).

Block texts are the report's own plain text, in which `code` spans and **bold** are marked as in Markdown; the
HTML template escapes them and marks those two up (filter `inline`). Markdown written elsewhere (the accuracy
table, the resource counts) is a `MarkdownFragment`: its headings move two levels down (under the page's h1 and the
section's h2) and the HTML comes from the `markdown` library with raw HTML turned off, so any "<" in it is text.
"""
from __future__ import annotations

import dataclasses
import html
import re

import jinja2
import markdown as markdown_lib
from markupsafe import Markup

from .tables import markdown_table

SECTIONS = {"summary": "Summary", "conformance": "Conformance matrix", "errors": "Error distributions per backend",
            "accuracy": "Accuracy", "sweep": "Precision sweep", "benchmarks": "Benchmarks", "claims": "Claims", "resources": "Resources",
            "machine": "Machines"}  # in the page's order: the answer first, the details after it


@dataclasses.dataclass
class Paragraph:
    text: str  # plain text; `code` spans and **bold** allowed
    cls: str = ""
    kind = "paragraph"


@dataclasses.dataclass
class SubHeading:
    text: str
    kind = "subheading"


@dataclasses.dataclass
class TableCell:
    text: str  # "\n" = line break
    cls: str = ""


@dataclasses.dataclass
class TableBlock:
    header: list
    rows: list  # of lists of str | TableCell | None (None: "-")
    cls: str = ""
    kind = "table"

    def header_cells(self) -> list[TableCell]:
        return [as_cell(c) for c in self.header]

    def cells(self) -> list[list[TableCell]]:
        return [[as_cell(c) for c in r] for r in self.rows]

    def markdown(self) -> str:
        return markdown_table(self.header, [[c.text for c in r] for r in self.cells()])


@dataclasses.dataclass
class Details:
    """A collapsed block (HTML `<details>`): a one-line summary, then blocks and/or a list of plain-text items."""

    summary: str
    blocks: list = dataclasses.field(default_factory=list)
    items: list = dataclasses.field(default_factory=list)
    kind = "details"


@dataclasses.dataclass
class ReportImage:
    name: str  # file name under img/
    alt: str
    caption: str
    kind = "image"


@dataclasses.dataclass
class NotRunNotice:
    what: str  # what is missing (and why)
    commands: list  # the commands that produce it
    kind = "notrun"


@dataclasses.dataclass
class MarkdownFragment:
    text: str  # Markdown, headings from level 1 on
    cls: str = ""
    kind = "markdown"

    @property
    def demoted(self) -> str:
        return demote_headings(self.text.strip(), 2)


@dataclasses.dataclass
class ReportSection:
    id: str  # a key of SECTIONS
    blocks: list

    @property
    def title(self) -> str:
        return SECTIONS[self.id]


def as_cell(c) -> TableCell:
    return c if isinstance(c, TableCell) else TableCell("-" if c is None else str(c))


def demote_headings(text: str, shift: int) -> str:
    """Markdown with every ATX heading `shift` levels lower (at most level 6)."""
    return re.sub(r"^(#{1,6})(?=\s)", lambda m: "#" * min(6, len(m[1]) + shift), text, flags=re.MULTILINE)


def markdown_to_html(text: str, shift: int = 0) -> Markup:
    """HTML of Markdown text (pipe tables, fenced code, lists; a line break in a paragraph is kept), headings moved
    `shift` levels down. Raw HTML in the text is not passed through: it comes out escaped, as text."""
    md = markdown_lib.Markdown(extensions=["tables", "fenced_code", "sane_lists", "nl2br"], output_format="html")
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return Markup(md.convert(demote_headings(text, shift) if shift else text))


def inline_html(text) -> Markup:
    """HTML of one line of the report's plain text: escaped, with `code` spans and **bold** marked up."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return Markup(re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out))


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("s4dconf.reports", "templates"),
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                                 default_for_string=True, default=False),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(inline=inline_html, markdown_html=markdown_to_html, anchor=github_anchor)
    return env


ENVIRONMENT = _environment()


def render_html(sections: list[ReportSection], title: str, lead: str = "") -> str:
    """The self-contained HTML page (inline CSS and the img-check script, no external resource): the title, the
    lead line, the summary section, the contents, then the other sections."""
    return ENVIRONMENT.get_template("report.html.j2").render(sections=sections, title=title, lead=lead)


def render_markdown(sections: list[ReportSection], title: str, lead: str = "") -> str:
    """The Markdown mirror of the page (images linked from img/)."""
    return ENVIRONMENT.get_template("report.md.j2").render(sections=sections, title=title, lead=lead)
