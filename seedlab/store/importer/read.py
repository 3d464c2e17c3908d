"""Files -> one pyarrow Table each, by pyarrow's own readers (`pyarrow.parquet`, `pyarrow.csv`, `pyarrow.json`).

Reading only turns bytes into typed columns; what the columns must hold is `validate`'s job. Where pyarrow's
defaults would change what a user wrote, the options say otherwise:

* CSV: the named string columns (``instance_id``; every column of runs.csv) are read as text, so an id
  ``007`` stays ``"007"`` and ``1e3`` stays ``"1e3"``. Only an empty cell is missing (not ``NA``, ``null``
  or ``nan``, which pyarrow would also take for missing: ``nan`` is a number that validation refuses as not
  finite, ``NA`` is text). ``true``/``false`` stay text, not booleans. Header names and text cells lose
  surrounding spaces, as pyarrow already does for numbers. Quoted fields may hold commas, quotes and line
  breaks. Blank lines are skipped.
* JSONL: one object per line; the whole file is one block, so that the row pyarrow names in an error is the
  file's row.
* parquet: as stored.

Messages name a row of a text file by its line (header = line 1), and a parquet row by its index from 0. In
a text file where some record does not take exactly one line (a quoted line break in CSV, an object split
over lines or two on one line in JSONL), lines cannot name rows, and the index from 0 is used there too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from seedlab.errors import SeedlabError

PRED_SUFFIXES = (".parquet", ".csv", ".jsonl")


@dataclass
class TableFile:
    """A file as pyarrow read it, and how to name its rows in messages."""

    path: Path
    table: pa.Table
    header_records: int = 0  # records before the first data row: 1 for CSV (the header)
    skipped_records: frozenset = frozenset()  # CSV: records (0-based, header = 0) left out as blank
    records: int | None = None  # text files: every record pyarrow saw, header and skipped ones included

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def missing(self) -> str:
        """What a missing value is in this format, for messages."""
        return {".csv": "empty", ".jsonl": "missing or null"}.get(self.path.suffix, "null")

    def row(self, i: int) -> str:
        """Data row `i` of the table as messages name it: "line 7" (text files) or "row 5" (parquet)."""
        return self.record(self._kept[i])

    def record(self, k: int) -> str:
        """Record `k` (0-based, header included) as messages name it."""
        if self.records is None:
            return f"row {k}"
        lines = self._record_lines
        return f"line {lines[k]}" if lines is not None and k < len(lines) else f"row {k - self.header_records}"

    @cached_property
    def _kept(self) -> list[int]:
        if self.records is None:
            return list(range(self.table.num_rows))
        return [k for k in range(self.header_records, self.records) if k not in self.skipped_records]

    @cached_property
    def _record_lines(self) -> list[int] | None:
        """1-based line of each record, or None when records and lines do not pair off one to one. Read only
        when a message needs it; blank lines are no records (CSV: only empty ones; whitespace is a record)."""
        lines = self.path.read_bytes().splitlines()
        numbers = [n for n, line in enumerate(lines, start=1) if (line.strip() if self._whitespace_is_blank else line)]
        return numbers if len(numbers) == self.records else None

    @property
    def _whitespace_is_blank(self) -> bool:
        return self.path.suffix == ".jsonl"


def read_table_file(path: Path) -> TableFile:
    """A prediction file (``.parquet``, ``.csv`` or ``.jsonl``) as one table."""
    if path.suffix == ".parquet":
        return read_parquet(path)
    if path.suffix == ".csv":
        return read_csv(path, text_columns=("instance_id",))
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    raise SeedlabError(f"{path.name}: not a prediction file (valid suffixes: {', '.join(PRED_SUFFIXES)})")


def read_parquet(path: Path) -> TableFile:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise SeedlabError(f"{path.name}: not a readable parquet file ({_first_line(exc)})") from None
    return TableFile(path, table)


def read_csv(path: Path, *, text_columns=None) -> TableFile:
    """A CSV file with a header line. `text_columns`: the names read as text (None: every column)."""
    names = _csv_header(path)
    if not names:
        return TableFile(path, pa.table({}), header_records=1, records=0)
    invalid = []  # pyarrow.csv.InvalidRow of each record whose field count differs from the header's

    def on_invalid_row(row):
        invalid.append(row)
        return "skip"

    types = {n: pa.string() for n in names if text_columns is None or n in text_columns}
    try:
        table = pa_csv.read_csv(
            path,
            # use_threads=False: invalid rows carry their record number only when read serially
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False,
                                                  true_values=[], false_values=[]))
    except pa.ArrowInvalid as exc:
        raise SeedlabError(f"{path.name}: not a readable CSV file ({_first_line(exc)})") from None
    skipped = frozenset(row.number - 1 for row in invalid)
    file = TableFile(path, _strip_text(table), header_records=1, skipped_records=skipped,
                     records=1 + table.num_rows + len(invalid))
    for row in invalid:
        if row.text.strip():  # a whitespace-only line is a blank line, not a short row
            raise SeedlabError(f"{path.name} {file.record(row.number - 1)}: has {row.actual_columns} fields where "
                               f"the header has {row.expected_columns}")
    return file


def _csv_header(path: Path) -> list[str]:
    """The header's names, without surrounding spaces ([] for an empty file)."""
    try:
        with pa_csv.open_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True,
                                                                     invalid_row_handler=lambda row: "skip")) as reader:
            return [name.strip() for name in reader.schema.names]
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return []
        raise SeedlabError(f"{path.name}: not a readable CSV file ({_first_line(exc)})") from None


def _strip_text(table: pa.Table) -> pa.Table:
    """Text cells without surrounding spaces, as the header names and pyarrow's numbers."""
    columns = [pc.utf8_trim_whitespace(col) if pa.types.is_string(col.type) else col for col in table.columns]
    return pa.table(columns, names=table.column_names)


_JSON_ROW = re.compile(r" in row (\d+)$")
_JSON_TYPE_CHANGE = re.compile(r"Column\(/?(.*)\) changed from (\w+) to (\w+)")
_VALID_JSONL = "valid: one JSON object per line, each key holding one type"


def read_jsonl(path: Path) -> TableFile:
    """One JSON object per line."""
    size = path.stat().st_size
    if size == 0:  # pyarrow refuses an empty file; one of blank lines reads as an empty table
        return TableFile(path, pa.table({}), records=0)
    try:
        # one block for the whole file, so that the row in pyarrow's messages counts from the file's start
        table = pa_json.read_json(path, read_options=pa_json.ReadOptions(block_size=size + 1))
    except pa.ArrowInvalid as exc:
        raise SeedlabError(_json_error(path, _first_line(exc))) from None
    return TableFile(path, table, records=table.num_rows)


def _json_error(path: Path, message: str) -> str:
    """pyarrow's "JSON parse error: ... in row 4" -> "<file> line 5: ...", the row named like any other."""
    where = _JSON_ROW.search(message)
    if not where:
        return f"{path.name}: not valid JSON lines ({message}; {_VALID_JSONL})"
    row = TableFile(path, pa.table({}), records=_count_records(path)).record(int(where.group(1)))
    change = _JSON_TYPE_CHANGE.search(message)
    if change:  # the first row whose value has another JSON type than the rows before it
        key, before, now = change.groups()  # key "" is the line itself, "probs/[]" a value in the probs list
        what = f"a value of {key.removesuffix('/[]')} is" if key.endswith("/[]") else f"{key} is" if key else "is"
        return f"{path.name} {row}: {what} {_article(now)} where earlier lines have {_article(before)} ({_VALID_JSONL})"
    return f"{path.name} {row}: not valid JSON ({message[:where.start()].removeprefix('JSON parse error: ')}; " \
           f"{_VALID_JSONL})"


def _article(json_type: str) -> str:
    return f"an {json_type}" if json_type[0] in "aeiou" else f"a {json_type}"


def _count_records(path: Path) -> int:
    """Records of a JSONL file pyarrow could not read, taken to be its non-blank lines (the format): with no
    table to count them, rows are named by line up to the last one."""
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
