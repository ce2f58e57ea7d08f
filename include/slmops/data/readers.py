"""Read local JSON, JSONL, CSV and Parquet files into frames that remember where rows came from.

Every frame carries two extra columns: ``SOURCE`` (the file) and ``LINE`` (the line of a
text file where the row starts, or the row number of a Parquet file), so validation can
point at the exact place to fix. Errors name the file and line and say what to do.

Given the data roots, every file is resolved (symlinks followed) when it is opened and
must lie inside one of them. Sizes are checked before anything is read: a file may hold
at most $SLMOPS_MAX_DATA_FILE_MB (default 1024; for Parquet, also uncompressed), a line
of JSON Lines or CSV, or one row of a JSON array, at most $SLMOPS_MAX_DATA_LINE_MB
(default 16).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from pathlib import Path

import pandas as pd

from slmops.errors import ConfigError, DataError

SOURCE = "_slmops_source"
LINE = "_slmops_line"
META_COLUMNS = (SOURCE, LINE)

READERS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
MAX_FILE_MB_ENV = "SLMOPS_MAX_DATA_FILE_MB"
MAX_LINE_MB_ENV = "SLMOPS_MAX_DATA_LINE_MB"
_DEFAULT_LIMITS_MB = {MAX_FILE_MB_ENV: 1024.0, MAX_LINE_MB_ENV: 16.0}
_MB = 1024 * 1024
# datasets' folder convention: a file or sub-folder named after its split.
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev", "eval"),
    "test": ("test", "testing"),
}


def read_file(path: Path, roots: list[Path] | None = None) -> pd.DataFrame:
    """All rows of one local file, with ``SOURCE`` / ``LINE`` columns; with ``roots``, the
    file (symlinks resolved) must lie inside one of them."""
    path = Path(path)
    kind = READERS_BY_SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(none)'}; use one of "
            + ", ".join(sorted(READERS_BY_SUFFIX))
        )
    opened = confined(path, roots)
    if not opened.is_file():
        raise DataError(f"{path}: no such file")
    size = opened.stat().st_size
    if size == 0:
        raise DataError(f"{path}: the file is empty; it needs at least one row")
    _check_size(path, size, "the file")
    if kind == "parquet":
        records, lines = _read_parquet(path, opened)
    else:
        text = _decode(path, opened)
        reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_csv}
        if kind != "json":  # a JSON array may be one line; its rows are checked one by one
            _check_line_lengths(path, text)
        records, lines = reader[kind](path, text)
    if not records:
        raise DataError(f"{path}: no rows found; the file needs at least one row")
    frame = pd.DataFrame.from_records(records)
    frame[SOURCE] = str(path)
    frame[LINE] = lines
    return frame


def confined(path: Path, roots: list[Path] | None) -> Path:
    """``path`` resolved (symlinks followed); with ``roots``, it must lie inside one."""
    resolved = Path(path).resolve()
    if roots is not None and not any(
        resolved.is_relative_to(Path(root).resolve()) for root in roots
    ):
        allowed = ", ".join(str(root) for root in roots) or "(none)"
        raise DataError(
            f"{path}: resolves to {resolved}, outside the data roots ({allowed}); copy the "
            "file into a data root instead of linking to it"
        )
    return resolved


def limit_bytes(variable: str) -> int:
    """A size limit from the environment, in bytes (``variable`` holds megabytes)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return int(_DEFAULT_LIMITS_MB[variable] * _MB)
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1.0
    if not 0 < megabytes < float("inf"):
        raise ConfigError(f"${variable}={value!r}: give a positive number of megabytes")
    return int(megabytes * _MB)


def _check_size(path: Path, size: int, what: str, line: int | None = None) -> None:
    variable = MAX_FILE_MB_ENV if line is None else MAX_LINE_MB_ENV
    limit = limit_bytes(variable)
    if size > limit:
        where = f"{path}: line {line}" if line is not None else str(path)
        raise DataError(
            f"{where}: {what} is {size / _MB:.1f} MB, over the limit of {limit / _MB:g} MB "
            f"(${variable}); split the data, or raise ${variable} where the workers have "
            "the memory for it"
        )


def _check_line_lengths(path: Path, text: str) -> None:
    limit = limit_bytes(MAX_LINE_MB_ENV)
    if len(text) <= limit:
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > limit:
            _check_size(path, len(line.encode("utf-8")), "the line", number)


def expand_paths(entries: list[str], roots: list[Path] | None = None) -> list[Path]:
    """Files named by ``--data_files`` entries: files, glob patterns or folders (a name
    that exists is taken as it is, so ``data[1].jsonl`` is a file). Every match of a
    pattern must lie inside ``roots`` when given."""
    paths: list[Path] = []
    for entry in entries:
        if any(char in entry for char in "*?[") and not Path(entry).exists():
            matches = sorted(Path(match) for match in glob.glob(entry, recursive=True))
            if not matches:
                raise DataError(f"{entry}: the pattern matches no file")
            for match in matches:
                confined(match, roots)
            paths.extend(match for match in matches if match.is_file())
        else:
            paths.append(Path(entry))
    return paths


def folder_files(folder: Path) -> dict[str, list[Path]]:
    """Data files of a folder grouped by split, by file or sub-folder name; all ``train``
    when nothing is named after a split."""
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in READERS_BY_SUFFIX
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise DataError(
            f"{folder}: no data files in this folder (looked for "
            + ", ".join(sorted(READERS_BY_SUFFIX))
            + ")"
        )
    grouped: dict[str, list[Path]] = {}
    for path in files:
        split = _split_of(path.relative_to(folder))
        if split is not None:
            grouped.setdefault(split, []).append(path)
    return grouped if grouped else {"train": files}


def _split_of(relative: Path) -> str | None:
    words = [relative.stem.lower(), *(part.lower() for part in relative.parts[:-1])]
    for split, aliases in SPLIT_NAMES.items():
        for word in words:
            head = word.replace("_", "-").split("-")[0]
            if word in aliases or head in aliases:
                return split
    return None


def _decode(path: Path, opened: Path) -> str:
    data = opened.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, column {column}: not UTF-8 (byte 0x{data[exc.start]:02x}); "
            "re-save the file with UTF-8 encoding"
        ) from None
    return text.removeprefix("\ufeff")


def _read_jsonl(path: Path, text: str) -> tuple[list[dict], list[int]]:
    records, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except RecursionError:
            raise _too_deep(path, number) from None
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: line {number}, column {exc.colno}: malformed JSON ({exc.msg}); "
                "each line must hold one JSON object"
            ) from None
        _require_object(record, path, number)
        records.append(record)
        lines.append(number)
    return records, lines


def _read_json(path: Path, text: str) -> tuple[list[dict], list[int]]:
    """A JSON array of objects, each with the line it starts on; JSON Lines also accepted."""
    decoder = json.JSONDecoder()
    stripped = text.strip()
    if not stripped.startswith("["):
        if stripped.startswith("{") and "\n" in stripped:
            _refuse_single_object(path, stripped)
        return _read_jsonl(path, text)
    records, lines = [], []
    position = text.index("[") + 1
    # Lines are counted from the previous row on, not from the start: linear in the file.
    line, counted = 1, 0
    try:
        while True:
            position = _skip_space(text, position)
            if text.startswith("]", position):
                position += 1
                break
            if records:
                if not text.startswith(",", position):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
                position = _skip_space(text, position + 1)
            line, counted = line + text.count("\n", counted, position), position
            record, end = _decode_value(decoder, text, position, path, line)
            _check_size(path, end - position, "the row", line)
            _require_object(record, path, line)
            records.append(record)
            lines.append(line)
            position = end
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: line {exc.lineno}, column {exc.colno}: malformed JSON ({exc.msg})"
        ) from None
    if text[position:].strip():
        line += text.count("\n", counted, position)
        raise DataError(f"{path}: line {line}: unexpected text after the closing ]")
    return records, lines


def _decode_value(decoder: json.JSONDecoder, text: str, position: int, path: Path, line: int):
    try:
        return decoder.raw_decode(text, position)
    except RecursionError:
        raise _too_deep(path, line) from None


def _too_deep(path: Path, line: int) -> DataError:
    return DataError(
        f"{path}: line {line}: the row nests objects or lists too deeply to read (past "
        f"Python's recursion limit, {sys.getrecursionlimit()}); rows are flat records of fields"
    )


def _refuse_single_object(path: Path, text: str) -> None:
    """A pretty-printed object is not JSON Lines; say where the rows should be."""
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return  # JSON Lines (or broken JSON): the line reader reports it precisely
    lists = [key for key, value in whole.items() if isinstance(value, list)]
    hint = f" (its {lists[0]!r} field holds a list: make that list the whole file)" if lists else ""
    raise DataError(
        f"{path}: holds one JSON object spanning several lines{hint}; write an array of row "
        "objects, or one object per line (JSON Lines)"
    )


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    if position >= len(text):
        raise json.JSONDecodeError("Unterminated array: expecting ']'", text, position)
    return position


def _require_object(record: object, path: Path, line: int) -> None:
    if not isinstance(record, dict):
        raise DataError(
            f"{path}: line {line}: expected a JSON object with named fields, "
            f"got {type(record).__name__}"
        )


def _read_csv(path: Path, text: str) -> tuple[list[dict], list[int]]:
    """Cells stay strings (no "NA" -> missing guessing); empty cells stay empty strings."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # A quoted cell may span lines: bound it by the line limit too (csv's default is 128 KB).
    csv.field_size_limit(limit_bytes(MAX_LINE_MB_ENV))
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: no header row") from None
    if len(set(header)) != len(header) or not all(name.strip() for name in header):
        raise DataError(f"{path}: line 1: column names must be non-empty and distinct: {header}")
    records, lines = [], []
    start = reader.line_num + 1
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                start = reader.line_num + 1
                continue
            if len(cells) != len(header):
                raise DataError(
                    f"{path}: line {start}: {len(cells)} fields, but the header has "
                    f"{len(header)}; quote fields that contain the delimiter"
                )
            records.append(dict(zip(header, cells, strict=True)))
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    return records, lines


def _read_parquet(path: Path, opened: Path) -> tuple[list[dict], list[int]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(opened) as parquet:
            metadata = parquet.metadata
            unpacked = sum(
                metadata.row_group(index).total_byte_size
                for index in range(metadata.num_row_groups)
            )
            # Compressed, a small file can hold gigabytes: check what it unpacks to first.
            _check_size(path, unpacked, "the data uncompressed")
            table = parquet.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    records = table.to_pylist()
    return records, list(range(1, len(records) + 1))
