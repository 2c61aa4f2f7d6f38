"""Reading user files and writing outputs safely.

Reading: strict UTF-8, and every problem becomes one ``PrefloopError`` line "FILE:ROW: field X: what is
wrong; what to do". Writing: temporary file or folder, then ``os.replace``, so a reader never sees half
a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import PrefloopError

MAX_TEXT_CHARS = 32_000  # per prompt, turn or candidate: ~8k tokens; a longer value is a broken file


def where(path: Path, row: int | None = None, field: str | None = None) -> str:
    """The "FILE:ROW: field X" prefix of an error message."""
    out = f"{path}:{row}" if row is not None else f"{path}"
    return f"{out}: field {field}" if field else out


def read_text(path: Path) -> str:
    """The whole file as text; invalid UTF-8 names the line it is on."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PrefloopError(f"{path}: cannot read: {exc.strerror}; check the path") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PrefloopError(
            f"{path}:{line}: invalid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from None


def checked_text(value: Any, path: Path, row: int, field: str) -> str:
    """``value`` if it is a usable text: a non-blank string without NUL, at most MAX_TEXT_CHARS long."""
    at = where(path, row, field)
    if not isinstance(value, str):
        raise PrefloopError(f"{at}: expected text, got {type(value).__name__}; fix the value")
    if not value.strip():
        raise PrefloopError(f"{at}: empty text; fill it in or remove the row")
    if len(value) > MAX_TEXT_CHARS:
        raise PrefloopError(
            f"{at}: text is {len(value):,} characters, the limit is {MAX_TEXT_CHARS:,}; "
            "shorten or remove the row"
        )
    if "\x00" in value:
        raise PrefloopError(f"{at}: contains a NUL character; remove it")
    return value


def csv_records(path: Path, text: str, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each CSV data row; ``required`` columns must be in the header."""
    # the csv module's own cell limit (128 KiB) would hide which field is too long: checked_text says it
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    # strict: a quote never closed is an error, not the rest of the file swallowed into one cell
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    start = 1  # the line the record being read starts on
    try:
        header = reader.fieldnames or []
        for name in required:
            if name not in header:
                raise PrefloopError(
                    f"{where(path, 1, name)}: no such column (columns: {', '.join(header) or 'none'}); "
                    "fix the header or pick another column"
                )
        start = reader.line_num + 1
        for row in reader:
            if None in row:
                raise PrefloopError(
                    f"{where(path, reader.line_num)}: more cells than header columns; quote cells with commas"
                )
            missing = [k for k in required if row.get(k) is None]
            if missing:
                at = where(path, reader.line_num, missing[0])
                raise PrefloopError(f"{at}: fewer cells than the header; fill in the row")
            yield reader.line_num, row
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise PrefloopError(
                f"{where(path, start)}: a quoted cell is never closed (the file ends inside it); "
                'add the closing " or double the quote ("")'
            ) from None
        # the line being parsed is not yet counted in line_num
        raise PrefloopError(f"{where(path, reader.line_num + 1)}: bad CSV ({exc}); fix the row") from None


def text_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) split on LF only (a CRLF's CR dropped).

    ``str.splitlines`` also splits on U+2028/U+2029, form feed, \\x1c-\\x1e and \\x85, all of which may
    stand inside a JSON string or a prompt.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def jsonl_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON Lines file."""
    for number, line in text_lines(text):
        if line.strip():
            yield number, json_line(path, number, line)


def json_line(path: Path, number: int, line: str) -> Any:
    """One JSON Lines line's value; bad JSON names the file and line."""
    return _loads(path, number, line, "line")


def json_document(path: Path, text: str) -> Any:
    return _loads(path, None, text, "file")


def _loads(path: Path, row: int | None, text: str, unit: str) -> Any:
    """``json.loads`` with every failure as one line; ``row`` None: a whole document (the line is found)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at, problem = row or exc.lineno, f"bad JSON ({exc.msg} at column {exc.colno}); fix the {unit}"
    except RecursionError:
        at, problem = row or _deepest_line(text), f"JSON nested too deeply to read; flatten the {unit}"
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits())
        limit = sys.get_int_max_str_digits()
        digits = re.search(rf"\d{{{limit + 1},}}", text)
        at = row or (text.count("\n", 0, digits.start()) + 1 if digits else None)
        problem = f"a number with more than {limit:,} digits; write it as a string or remove it"
    raise PrefloopError(f"{where(path, at)}: {problem}") from None


def _deepest_line(text: str) -> int:
    """The line on which brackets outside strings are nested deepest."""
    depth = best = 0
    line = best_line = 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif char in "]}":
            depth -= 1
    return best_line


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_replace_dir(build: Path, target: Path) -> None:
    """Swap a fully written folder ``build`` into place at ``target`` (the old one is removed after)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(build, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
