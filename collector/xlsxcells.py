"""Cells for the XLSX files we write (evidence sheets, ``points export``): text stays text.

openpyxl stores any string starting with ``=`` as a formula, so an agent message such as
``=HYPERLINK("http://…?d="&A1,"…")``, or a hostname or point name, became a live formula in a signed
``sheet.xlsx``. Every string goes out as a string cell, and text that a spreadsheet program would read as
a formula or a command (leading ``=``, ``+``, ``-``, ``@``, tab, carriage return) is prefixed with ``'``
(OWASP, CSV/formula injection). ``unneutralise`` takes the prefix off again on import, so an exported file
edited and imported back keeps its names.
"""

from __future__ import annotations

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """A cell value safe to write: strings that start like a formula get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def unneutralise(text: str) -> str:
    """The text ``neutralise`` was given (for reading our own exports back)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_LEADS) else text


def append(ws, values) -> None:
    """``ws.append`` with every string a plain string cell (data_type "s"), never a formula."""
    ws.append([neutralise(v) for v in values])
    for cell in ws[ws.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"
