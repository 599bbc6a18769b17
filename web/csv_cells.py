"""Cells of the CSV files relevel writes, safe to open in a spreadsheet (OWASP, "CSV
Injection"): a cell that begins with =, +, -, @, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets, and a name such as ``=HYPERLINK("http://evil", "x")``
would run as one. Such a cell is written with a leading apostrophe, which every spreadsheet
reads as "text", and read back without it by relevel's own import. A plain number (-5, +3.2,
and so an E.164 phone, +919876543210) is no formula and is written as itself.

django-import-export's IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT is not enough: it strips one
leading "=" and leaves "==", "@", "+" and "-" as they are.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """The value as a CSV cell no spreadsheet takes for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_cell_read(text: str) -> str:
    """What csv_cell wrote, as it was: the apostrophe it added is taken off again."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text[1:]):
        return text[1:]
    return text
