"""A plain table (title, columns, rows of strings, notes) and its renderings.

Every command builds one ``Table`` from its result objects and picks a rendering; the
conventions that give the numbers their meaning travel with the table as ``notes``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from mbcost.io import jsonable

__all__ = ["Table", "to_csv", "to_json"]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    align_right: bool = True
    #: How many leading columns hold names (left-aligned); the others hold numbers, right-aligned with
    #: ``align_right``.
    left: int = 1

    def _right(self, i: int) -> bool:
        return self.align_right and i >= self.left

    def to_markdown(self) -> str:
        def esc(s: str) -> str:
            return str(s).replace("|", "\\|")

        out = [f"**{esc(self.title)}**", "", "| " + " | ".join(esc(c) for c in self.columns) + " |"]
        out.append("|" + "|".join("---:" if self._right(i) else "---" for i in range(len(self.columns))) + "|")
        out += ["| " + " | ".join(esc(v) for v in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {esc(n)}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        """An HTML ``<table>`` for notebooks (``_repr_html_``): the same cells as every other rendering, the
        title and the notes (the conventions that give the numbers their meaning) as its caption. Every
        string is escaped."""
        from html import escape

        right = ' style="text-align: right"'

        def cells(tag: str, row: list[str]) -> str:
            return "".join(f"<{tag}{right if self._right(i) else ''}>{escape(str(v))}</{tag}>"
                           for i, v in enumerate(row))

        notes = "".join(f"<br><small>{escape(n)}</small>" for n in self.notes)
        # pre-wrap keeps the rows' indentation ("  at layer"), as the terminal shows it
        return ('<table class="mbcost" style="white-space: pre-wrap">\n'
                f'<caption style="caption-side: top; text-align: left"><strong>{escape(self.title)}</strong>'
                f"{notes}</caption>\n"
                f"<thead><tr>{cells('th', self.columns)}</tr></thead>\n<tbody>\n"
                + "".join(f"<tr>{cells('td', row)}</tr>\n" for row in self.rows)
                + "</tbody>\n</table>\n")

    def to_rich(self) -> Any:
        from rich.markup import escape
        from rich.table import Table as RichTable

        # Cells are plain text: escape them so "[counters]" or a user's label is never read as markup.
        t = RichTable(title=escape(self.title), caption=escape("\n".join(self.notes)) or None,
                      caption_justify="left")
        for i, c in enumerate(self.columns):
            t.add_column(escape(c), justify="right" if self._right(i) else "left", overflow="fold")
        for row in self.rows:
            t.add_row(*(escape(str(v)) for v in row))
        return t

    def to_text(self, width: int | None = None) -> str:
        """The rich table as plain text (no colours), for files and pipes."""
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=width or 200, color_system=None, soft_wrap=False).print(self.to_rich())
        return buf.getvalue()


def to_csv(records: list[dict[str, Any]]) -> str:
    """Records (flat dicts) as CSV with a header; the columns of every record, in the order first met
    (each model's ``params_vs_<other>`` differ), a cell a record lacks left empty."""
    buf = io.StringIO()
    if records:
        fields = list(dict.fromkeys(k for r in records for k in r))
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(records)
    return buf.getvalue()


def to_json(obj: Any) -> str:
    """Strict JSON (RFC 8259): a non-finite float (a ratio or rate with nothing to divide by) is ``null``;
    ``allow_nan=False`` keeps a bare ``NaN`` or ``Infinity`` from ever being written."""
    return json.dumps(jsonable(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")
