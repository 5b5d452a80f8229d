"""Tables as downloads: CSV (UTF-8 with a byte-order mark, so spreadsheet programs read the Chinese) and XLSX.

A table is a list of column headers and an iterable of rows; amounts stay integers in minor units, so
a spreadsheet sums them exactly. Both formats stream nothing clever: they are for finance's tables,
not for million-row dumps (those stream CSV on their own).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence

from flask import Response

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A cell starting with one of these is a formula to a spreadsheet program: export it as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")


def _cell(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_bytes(headers: Sequence[str], rows: Iterable[Sequence]) -> bytes:
    """The table as CSV text in UTF-8 with a byte-order mark."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return out.getvalue().encode("utf-8")


def xlsx_bytes(headers: Sequence[str], rows: Iterable[Sequence], *, sheet: str = "Sheet1") -> bytes:
    """The table as an XLSX workbook of one sheet, headers in bold and frozen."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    ws = workbook.active
    ws.title = _SHEET_NAME_BAD.sub("_", sheet)[:31] or "Sheet1"
    ws.append(list(headers))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"
    for row in rows:
        ws.append([_xlsx_value(v) for v in row])
    for column in ws.columns:
        width = max((len(str(c.value)) if c.value is not None else 0) for c in column)
        ws.column_dimensions[column[0].column_letter].width = min(max(width + 2, 8), 60)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _xlsx_value(value):
    if isinstance(value, dt.datetime):
        # Spreadsheets have no time zones: write the moment as text that says its offset.
        return value.isoformat()
    return _cell(value)


def table_response(headers: Sequence[str], rows: Iterable[Sequence], *, filename: str, fmt: str,
                   sheet: str = "Sheet1") -> Response:
    """A download of the table as `fmt` ("csv" or "xlsx"), named `filename` plus the extension."""
    if fmt == "xlsx":
        body, mimetype = xlsx_bytes(headers, rows, sheet=sheet), XLSX_MIMETYPE
    elif fmt == "csv":
        body, mimetype = csv_bytes(headers, rows), "text/csv"
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="{filename}.{fmt}"', "Cache-Control": "no-store"})
