"""HTML pieces shared by the report's page (``report.html``) and its claims section (``report.claims_html``)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

__all__ = ["e", "notes_html", "table_html"]


def e(text: Any) -> str:
    """Escape a value for HTML text and attributes."""
    return html.escape(str(text), quote=True)


def table_html(attrs: str, head: Iterable[str], rows: Iterable[str]) -> str:
    """A ``<table {attrs}>``: ``head`` the header cells' HTML, ``rows`` the body's ``<tr>`` elements."""
    return (f"<table {attrs}><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def notes_html(notes: Iterable[str]) -> str:
    """Lines of notes, escaped, in one small paragraph."""
    return f"<p class='small'>{'<br>'.join(e(n) for n in notes)}</p>"
