"""HTML bodies as text and as table rows, without rendering anything.

Lead-notification mails often come as HTML only: ``<strong>Email:</strong>
jane@x`` lines or a two-column ``<table>``. We never render that HTML and never
run what it contains; the stdlib :class:`html.parser.HTMLParser` walks the
tags, drops ``<script>``/``<style>``/``<head>`` content, turns block tags
into line breaks, and collects table cells. Entities are decoded by the
parser (``convert_charrefs``), so ``&lt;script&gt;`` stays inert text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: Tags whose text is never shown (and must never be kept as lead data).
_HIDDEN = frozenset({"script", "style", "head", "title", "noscript", "template", "iframe", "object", "svg"})
#: Tags that start a new line in the text version.
_BLOCK = frozenset(
    {"br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "blockquote", "pre", "section", "article", "dt", "dd"}
)
_WS = re.compile(r"[ \t\r\f\v\u00a0]+")


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    # Text -------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden_depth += 1
            return
        if tag in _BLOCK:
            self.parts.append("\n")
        if tag == "tr":
            self._close_row()
            self._row = []
        elif tag in ("td", "th"):
            self._close_cell()
            if self._row is None:
                self._row = []
            self._cell = []
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")
            if self._cell is not None:
                self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden_depth = max(0, self.hidden_depth - 1)
            return
        if tag in ("td", "th"):
            self._close_cell()
        elif tag == "tr":
            self._close_row()
        elif tag == "table":
            self._close_row()
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.hidden_depth:
            return
        self.parts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    # Tables -----------------------------------------------------------
    def _close_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            self._row.append(_clean(" ".join(self._cell)))
        self._cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self._row:
            self.rows.append(self._row)
        self._row = None


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _walk(html: str) -> _Walker:
    walker = _Walker()
    try:
        walker.feed(html)
        walker.close()
    except Exception:  # pragma: no cover - HTMLParser is lenient; keep what we have
        pass
    walker._close_row()
    return walker


def html_text_and_rows(html: str) -> tuple[str, list[list[str]]]:
    """:func:`html_to_text` and :func:`html_table_rows` from one walk of the document."""
    walker = _walk(html)
    return _text_of(walker), walker.rows


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, one block per line, scripts and styles removed."""
    return _text_of(_walk(html))


def _text_of(walker: _Walker) -> str:
    lines = (_clean(line) for line in "".join(walker.parts).split("\n"))
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def html_table_rows(html: str) -> list[list[str]]:
    """Every table row of an HTML body as its list of cell texts."""
    return _walk(html).rows


def table_pairs(rows: list[list[str]]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs from two-column rows (``<td>Email</td><td>…</td>``).

    A label cell may end with a colon; rows with one cell or more than two
    non-empty cells are not label/value rows and are left out.
    """
    pairs: list[tuple[str, str]] = []
    for row in rows:
        cells = [c for c in row if c]
        if len(cells) != 2:
            continue
        label, value = cells
        label = label.rstrip(":").strip()
        if label and len(label) <= 60:
            pairs.append((label, value))
    return pairs
