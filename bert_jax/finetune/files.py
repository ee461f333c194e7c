"""Opening the task files (GLUE/XNLI TSV, SQuAD JSON, CoNLL): one-line errors.

Task files are small, labelled and read whole, so they are held to strict
UTF-8: a byte that is not UTF-8 (a Latin-1 "naïve", a cp1252 quote) is
refused with the file and line named, never decoded into U+FFFD that
WordPiece would then silently drop. A directory where a file is expected is
named as a directory, not reported as missing.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

from bert_jax.errors import DataError

ICONV_HINT = "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)"


def check_file(path: str | pathlib.Path, missing_hint: str) -> pathlib.Path:
    """`path` as a Path; DataError when it does not exist (with `missing_hint`)
    or is a directory."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a file; name the file inside it (e.g. {path}/test.tsv)")
    if not path.is_file():
        raise DataError(f"{path} does not exist; {missing_hint}")
    return path


def not_utf8(path: pathlib.Path, line: int, raw: bytes, error: UnicodeDecodeError) -> DataError:
    """The error for line `line` (1-based, bytes `raw`) of `path` that is not UTF-8."""
    bad = raw[error.start : error.end]
    return DataError(
        f"{path}:{line}: byte{'s' if len(bad) > 1 else ''} {bad.hex(' ')} at column {error.start + 1} "
        f"{'are' if len(bad) > 1 else 'is'} not UTF-8; {ICONV_HINT}"
    )


def first_bad_line(path: pathlib.Path) -> DataError:
    """The `not_utf8` error of the first line of `path` that is not UTF-8
    (called once decoding the whole file has failed)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return not_utf8(path, number, raw, e)
    # Unreachable in practice (no UTF-8 sequence spans a newline byte); never a traceback.
    return DataError(f"{path} is not UTF-8; {ICONV_HINT}")


def utf8_lines(path: pathlib.Path, newline: str | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file read as strict UTF-8;
    DataError naming the file and line of a byte that is not UTF-8."""
    try:
        with open(path, encoding="utf-8", newline=newline) as f:
            yield from enumerate(f, start=1)
    except UnicodeDecodeError:
        raise first_bad_line(path) from None


def utf8_text(path: pathlib.Path) -> str:
    """The whole file as strict UTF-8; DataError naming the line of a byte that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        raw = data[start : end if end >= 0 else len(data)]
        shifted = UnicodeDecodeError(e.encoding, raw, e.start - start, e.end - start, e.reason)
        raise not_utf8(path, line, raw, shifted) from None
