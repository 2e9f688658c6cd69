"""Reading tabular files: encodings, delimiters, CSV and Excel rows with their line numbers.

Encoding: a byte-order mark decides (UTF-8, UTF-16 LE/BE); otherwise the
whole file is checked as strict UTF-8 (incrementally, never all in memory);
otherwise charset-normalizer detects it over the whole file. ``--encoding``
always wins.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt

from pathlib import Path
from typing import IO, Any, Iterator

from corecrm.errors import CaptureError

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CHUNK = 1 << 20


def detect_encoding(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(4)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return name
        fh.seek(0)
        dec = codecs.getincrementaldecoder("utf-8")("strict")
        try:
            while chunk := fh.read(_CHUNK):
                dec.decode(chunk)
            dec.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_path

    results = from_path(path)
    best = results.best()
    if best is None:
        raise CaptureError(f"{path}: cannot tell the text encoding; pass --encoding")
    enc = best.encoding
    # On short files the detector often cannot tell Windows-1252 (by far the most
    # common non-UTF-8 export encoding) from old DOS/Mac code pages that decode
    # the same bytes; prefer cp1252 when it is a candidate and reads the file.
    legacy = enc.startswith(("cp4", "cp8", "mac_", "cp7", "kz", "ptcp", "hp_"))
    if legacy and _decodes(path, "cp1252"):
        return "cp1252"
    if enc.startswith("cp125") and enc != "cp1252" and _same_text(path, enc, "cp1252"):
        return "cp1252"  # the file reads the same either way: name the common one
    return {"ascii": "utf-8"}.get(enc, enc)


def _same_text(path: Path, a: str, b: str) -> bool:
    data = path.read_bytes()
    try:
        return data.decode(a) == data.decode(b)
    except UnicodeDecodeError:
        return False


def _decodes(path: Path, encoding: str) -> bool:
    dec = codecs.getincrementaldecoder(encoding)("strict")
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                dec.decode(chunk)
        return True
    except UnicodeDecodeError:
        return False


def open_text(path: Path, encoding: str | None) -> tuple[IO[str], str]:
    enc = encoding or detect_encoding(path)
    try:
        codecs.lookup(enc)
    except LookupError:
        raise CaptureError(f"{path}: unknown encoding {enc!r}") from None
    return path.open("r", encoding=enc, errors="strict", newline=""), enc


def sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        # One column, or nothing the sniffer trusts: count the candidates in the first line.
        first = sample.splitlines()[0] if sample else ""
        best = max(",;\t|", key=first.count)

        class _D(csv.excel):
            delimiter = best if first.count(best) else ","

        return _D


class Table:
    """Header and rows of a file; ``rows()`` yields (line number, values, raw text)."""

    def __init__(self, header: list[str], rows: Iterator[tuple[int, list[str], str]], encoding: str | None, delimiter: str | None, progress: Any = None) -> None:
        self.header = header
        self._rows = rows
        self.encoding = encoding
        self.delimiter = delimiter
        self.progress = progress

    def rows(self) -> Iterator[tuple[int, list[str], str]]:
        return self._rows


def read_csv(path: Path, encoding: str | None = None, delimiter: str | None = None) -> Table:
    fh, enc = open_text(path, encoding)
    try:
        sample = fh.read(64 * 1024)
    except UnicodeDecodeError as exc:
        fh.close()
        raise CaptureError(f"{path}: not valid {enc} text ({exc.reason} at byte {exc.start}); pass --encoding") from None
    fh.seek(0)
    dialect = sniff_dialect(sample)
    if delimiter:
        class _Given(csv.excel):
            pass

        _Given.delimiter = delimiter
        dialect = _Given
    reader = csv.reader(fh, dialect)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        raise CaptureError(f"{path}: empty file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        fh.close()
        raise CaptureError(f"{path}: line 1: {exc}") from None
    delim = getattr(dialect, "delimiter", ",")

    def rows() -> Iterator[tuple[int, list[str], str]]:
        line = reader.line_num
        try:
            while True:
                start = line + 1
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError as exc:
                    raise CaptureError(f"{path}: near line {start}: not valid {enc} text ({exc.reason}); pass --encoding") from None
                except csv.Error as exc:
                    raise CaptureError(f"{path}: line {start}: {exc}") from None
                line = reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue  # blank line
                yield start, values, delim.join(values)
        finally:
            fh.close()

    return Table(header, rows(), enc, delim)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_xlsx(path: Path, sheet: str | None = None) -> Table:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise CaptureError(f"{path}: not a readable .xlsx workbook: {exc}") from None
    ws = wb[sheet] if sheet else wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    try:
        header = [_cell_text(v) for v in next(it)]
    except StopIteration:
        wb.close()
        raise CaptureError(f"{path}: the sheet is empty") from None

    def rows() -> Iterator[tuple[int, list[str], str]]:
        try:
            for n, row in enumerate(it, start=2):
                values = [_cell_text(v) for v in row]
                while values and values[-1] == "" and len(values) > len(header):
                    values.pop()
                if not any(values):
                    continue
                yield n, values, "\t".join(values)
        finally:
            wb.close()

    return Table(header, rows(), None, None)


def read_table(path: Path, *, encoding: str | None = None, delimiter: str | None = None, sheet: str | None = None) -> Table:
    if not path.exists():
        raise CaptureError(f"{path}: no such file")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_xlsx(path, sheet)
    return read_csv(path, encoding, delimiter)


def dicts(table: Table) -> Iterator[dict[str, Any]]:
    """Rows as dicts (the ``ImportFormat.read`` contract)."""
    for _line, values, _raw in table.rows():
        yield dict(zip(table.header, values))


