"""Corpus sources: a spec string -> documents of sentences, in a fixed order.

Specs (`iter_documents(spec)`):

* `GLOB[,GLOB...]` local text files, plain or `.gz`, matched files in sorted
  order. `format` says how a file holds documents:
  `file` (the whole file is one document of raw paragraphs),
  `paragraphs` (every blank-line separated paragraph is a document),
  `sentences` (the original BERT format: one sentence per line, a blank line
  between documents) or `auto` (`sentences` when nearly every line of the
  file's start is one whole sentence, else `file`).
* `tfds:NAME:FEATURE[:SPLIT][@DATA_DIR]` a TensorFlow Datasets text feature
  (split `train` by default), read from an already prepared DATA_DIR; every
  example is a document of raw paragraphs.
* `builtin:stdlib-docs` the docstrings of this Python's standard library
  (module, class and function docstrings, one module per document, modules in
  sorted path order), plus the `pydoc_data` help topics: ~2 MB of English with
  no download. It changes with the Python version.

Raw paragraphs are joined (hard-wrapped lines) and split into sentences by
`bert_jax.data.segment`. Nothing here aborts on odd text: bytes that are not
UTF-8 become U+FFFD (counted per line in `CorpusStats.skipped["non_utf8_lines"]`,
the first file:line named in `CorpusStats.first_seen`, and reported once on
stderr with that count and place, `warn_non_utf8`), lines over
`MAX_LINE_BYTES` are cut into pieces (`long_lines_cut`), empty files and
documents are skipped and counted.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import glob
import gzip
import os
import sys
import sysconfig
from collections.abc import Iterator
from typing import NamedTuple

from bert_jax.data import segment
from bert_jax.errors import DataError

BUILTIN_STDLIB_DOCS = "builtin:stdlib-docs"
FORMATS = ("auto", "file", "paragraphs", "sentences")
# A line is read in pieces of at most this many bytes, so a 10 MB line with
# no newline never becomes one 10 MB string downstream.
MAX_LINE_BYTES = 1 << 20
# `auto` looks at this many non-blank lines at a file's start.
_SNIFF_LINES = 200
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


class Document(NamedTuple):
    """One document: a key unique and stable for the corpus, and its sentences (non-empty strings).

    Keys: `FILE` (format file), `FILE#N` (N-th paragraph or document of FILE)
    with FILE relative to the glob's directory; `tfds:NAME:SPLIT:N`;
    `stdlib:MODULE`.
    """

    key: str
    sentences: list[str]


@dataclasses.dataclass
class CorpusStats:
    """What a pass over a corpus read, cut and skipped (filled in by `iter_documents`)."""

    files: int = 0
    documents: int = 0
    sentences: int = 0
    characters: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    first_seen: dict = dataclasses.field(default_factory=dict)
    non_utf8_warned: bool = False  # `warn_non_utf8` has printed its line

    def note(self, reason: str, where: str, count: int = 1) -> None:
        """Count `count` cases of `reason`; remember the first place it happened."""
        self.skipped[reason] += count
        self.first_seen.setdefault(reason, where)

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "sentences": self.sentences,
            "characters": self.characters,
            "skipped": dict(sorted(self.skipped.items())),
            "first_seen": dict(sorted(self.first_seen.items())),
        }


class RawDocument(NamedTuple):
    """A document before sentence splitting: raw paragraphs (`segmented=False`) or sentences."""

    key: str
    texts: list[str]
    segmented: bool


def iter_documents(
    spec: str, format: str = "auto", stats: CorpusStats | None = None, tfds_data_dir: str | None = None
) -> Iterator[Document]:
    """Documents of `spec` in a deterministic order; empty documents are skipped (counted in `stats`).

    Raises DataError for a glob that matches nothing, an unknown format or a
    malformed spec.
    """
    stats = stats if stats is not None else CorpusStats()
    for raw in iter_raw_documents(spec, format, stats, tfds_data_dir):
        doc = segment_document(raw, stats)
        if accept_document(doc, stats):
            yield doc


def iter_raw_documents(
    spec: str, format: str = "auto", stats: CorpusStats | None = None, tfds_data_dir: str | None = None
) -> Iterator[RawDocument]:
    """Documents of `spec` before sentence splitting (cheap: what a reader process hands to workers)."""
    if format not in FORMATS:
        raise DataError(f"corpus format {format!r} is unknown; use one of {', '.join(FORMATS)}")
    stats = stats if stats is not None else CorpusStats()
    try:
        if spec == BUILTIN_STDLIB_DOCS:
            yield from _stdlib_documents(stats)
        elif spec.startswith("builtin:"):
            raise DataError(f"corpus {spec!r}: unknown built-in corpus; the one built in is {BUILTIN_STDLIB_DOCS}")
        elif spec.startswith("tfds:"):
            yield from _tfds_documents(spec, stats, tfds_data_dir)
        else:
            yield from _file_documents(spec, format, stats)
    finally:
        # Also when the reader stops early (build-vocab's --max_chars): what was read is reported.
        warn_non_utf8(stats)


def warn_non_utf8(stats: CorpusStats) -> None:
    """One line on stderr, once per `stats`, when lines that are not UTF-8 were read with U+FFFD.

    Corpora are decoded with replacement rather than refused (a web-scale
    corpus nearly always holds a few bad bytes), but never silently: the
    tokenizer drops U+FFFD, so a Latin-1 "naïve" becomes "nave".
    """
    count = stats.skipped.get("non_utf8_lines", 0)
    if not count or stats.non_utf8_warned:
        return
    stats.non_utf8_warned = True
    where = stats.first_seen.get("non_utf8_lines", "")
    print(
        f"warning: {count} corpus line{'s' if count > 1 else ''} not UTF-8 (first at {where}); the bad bytes "
        "were read as U+FFFD, which the tokenizer drops. Convert the files to UTF-8 (e.g. iconv -f latin1 "
        "-t utf-8) to keep those characters.",
        file=sys.stderr,
        flush=True,
    )


def segment_document(raw: RawDocument, stats: CorpusStats) -> Document:
    """Split a raw document's paragraphs into sentences (over-long ones cut, counted in `stats`)."""
    if raw.segmented:
        return Document(raw.key, list(raw.texts))
    sentences: list[str] = []
    for paragraph in raw.texts:
        found, cut = segment.split_sentences(paragraph)
        if cut:
            stats.note("long_sentences_cut", raw.key, cut)
        sentences.extend(found)
    return Document(raw.key, sentences)


def accept_document(doc: Document, stats: CorpusStats) -> bool:
    """Count `doc` in `stats`; False (and counted as skipped) when it has no sentence."""
    if not doc.sentences:
        stats.note("empty_documents", doc.key)
        return False
    if len(doc.sentences) == 1:
        # Kept: NSP still makes a (random-next) instance from it, as the original does.
        stats.note("one_sentence_documents", doc.key)
    stats.documents += 1
    stats.sentences += len(doc.sentences)
    stats.characters += sum(len(s) for s in doc.sentences)
    return True


def expand_globs(spec: str) -> list[str]:
    """Files of comma-separated globs (or directories), each glob's matches sorted; DataError if one matches nothing."""
    return [path for path, _ in _files_and_keys(spec)]


def _glob_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard ("/a/b/*.txt" -> "/a/b")."""
    if os.path.isdir(pattern):
        return pattern
    parts = pattern.split(os.sep)
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts) - 1)
    return os.sep.join(parts[:fixed]) or "."


def _files_and_keys(spec: str) -> list[tuple[str, str]]:
    """(path, key) of every matched file; the key is the path relative to its glob's fixed directory.

    Keys, not paths, seed create-data's randomness, so moving a corpus to
    another directory does not change the records made from it.
    """
    found: list[tuple[str, str]] = []
    for pattern in (p.strip() for p in spec.split(",")):
        if not pattern:
            continue
        if os.path.isdir(pattern):
            matches = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if os.path.isfile(os.path.join(pattern, name))
            )
        else:
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not matches:
            raise DataError(f"input {pattern!r} matches no file; check the path or quote the glob")
        root = _glob_root(pattern)
        found.extend((path, os.path.relpath(path, root)) for path in matches)
    if not found:
        raise DataError(f"input {spec!r} names no file; pass a glob, tfds:NAME:FEATURE or {BUILTIN_STDLIB_DOCS}")
    return found


# ---- local files ----


def _read_lines(path: str, stats: CorpusStats) -> Iterator[str | None]:
    """Decoded lines of a file, without newlines.

    A line longer than MAX_LINE_BYTES comes in pieces cut at its last space
    (the rest carried into the next piece), each piece between `None`s (a
    paragraph break), so memory stays bounded by MAX_LINE_BYTES.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            number, carry, in_long_line = 0, b"", False
            while True:
                raw = carry + f.readline(MAX_LINE_BYTES)
                carry = b""
                if not raw:
                    return
                complete = raw.endswith(b"\n")
                if not complete and len(raw) >= MAX_LINE_BYTES:
                    if not in_long_line:
                        stats.note("long_lines_cut", f"{path}:{number + 1}")
                    in_long_line = True
                    space = raw.rfind(b" ")
                    if space > 0:
                        raw, carry = raw[:space], raw[space + 1 :]
                number += complete
                text = _decode(raw, stats, f"{path}:{number + (not complete)}")
                if in_long_line:
                    yield None
                    yield text
                    yield None
                    in_long_line = not complete
                else:
                    yield text.rstrip("\r\n")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"corpus file {path}: cannot be read ({e}); fix or remove it") from None


def _decode(raw: bytes, stats: CorpusStats, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.note("non_utf8_lines", where)
        return raw.decode("utf-8", errors="replace")


def _sniff_format(path: str) -> str:
    """`sentences` when lines end where sentences end, else `file`.

    Looks at consecutive non-blank line pairs at the file's start: in the
    one-sentence-per-line format joining two gives two sentences; in
    hard-wrapped prose the second line mostly continues the first.
    """
    lines: list[str] = []
    pairs = breaks = 0
    for line in _read_lines(path, CorpusStats()):
        text = line.strip() if line else ""
        if text and lines:
            pairs += 1
            breaks += len(segment.split_sentences(lines[-1] + " " + text)[0]) >= 2
        lines = [text] if text else []
        if pairs >= _SNIFF_LINES:
            break
    return "sentences" if pairs and breaks >= 0.75 * pairs else "file"


def _file_documents(spec: str, format: str, stats: CorpusStats) -> Iterator[Document]:
    for path, key in _files_and_keys(spec):
        stats.files += 1
        if os.path.getsize(path) == 0:
            stats.note("empty_files", path)
            continue
        kind = _sniff_format(path) if format == "auto" else format
        if kind == "file":
            yield RawDocument(key, list(segment.paragraphs(_read_lines(path, stats))), False)
        elif kind == "paragraphs":
            for i, paragraph in enumerate(segment.paragraphs(_read_lines(path, stats))):
                yield RawDocument(f"{key}#{i}", [paragraph], False)
        else:
            yield from _sentence_per_line_documents(path, key, stats)


def _sentence_per_line_documents(path: str, key: str, stats: CorpusStats) -> Iterator[RawDocument]:
    index, sentences = 0, []
    for line in _read_lines(path, stats):
        text = line.strip() if line is not None else None
        if text == "":
            if sentences:
                yield RawDocument(f"{key}#{index}", sentences, True)
                index, sentences = index + 1, []
        elif text is not None:
            if len(text) > segment.MAX_SENTENCE_CHARS:
                stats.note("long_sentences_cut", f"{path}:{key}#{index}")
                sentences.extend(segment.split_long(text))
            else:
                sentences.append(text)
    if sentences:
        yield RawDocument(f"{key}#{index}", sentences, True)


# ---- TensorFlow Datasets ----


def parse_tfds_spec(spec: str, data_dir: str | None = None) -> tuple[str, str, str, str | None]:
    """`tfds:NAME:FEATURE[:SPLIT][@DATA_DIR]` -> (name, feature, split, data_dir)."""
    body = spec[len("tfds:") :]
    if "@" in body:
        body, data_dir = body.split("@", 1)
    parts = body.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise DataError(
            f"corpus {spec!r}: write tfds:NAME:FEATURE[:SPLIT][@DATA_DIR], e.g. tfds:wikipedia/20230601.en:text"
        )
    split = parts[2] if len(parts) == 3 else "train"
    return parts[0], parts[1], split, data_dir


def _tfds_documents(spec: str, stats: CorpusStats, data_dir: str | None) -> Iterator[RawDocument]:
    import tensorflow_datasets as tfds  # only this source needs it (slow to import)

    name, feature, split, data_dir = parse_tfds_spec(spec, data_dir)
    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False, download=False)
    except Exception as e:  # tfds raises many types (DatasetNotFoundError, AssertionError, ...)
        raise DataError(
            f"corpus {spec!r}: TFDS cannot load {name} split {split} from data_dir {data_dir} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); prepare it there first"
        ) from None
    if feature not in dataset.element_spec:
        raise DataError(
            f"corpus {spec!r}: {name} has no feature {feature!r}; it has {', '.join(sorted(dataset.element_spec))}"
        )
    stats.files += 1
    for i, example in enumerate(tfds.as_numpy(dataset.map(lambda ex: ex[feature]))):
        key = f"tfds:{name}:{split}:{i}"
        text = example.decode("utf-8", errors="replace") if isinstance(example, bytes) else str(example)
        if "\ufffd" in text:
            stats.note("non_utf8_lines", key)
        yield RawDocument(key, list(segment.paragraphs(text.split("\n"))), False)


# ---- built-in: the standard library's docstrings ----


def _stdlib_files() -> list[tuple[str, str]]:
    """(module name, path) of the stdlib's .py files, tests and site-packages left out, sorted by path."""
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _STDLIB_SKIP_DIRS and not d.startswith("test"))
        for name in files:
            if name.endswith(".py") and not name.startswith("test"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, root)[: -len(".py")].replace(os.sep, ".")
                found.append((module.removesuffix(".__init__"), path))
    return sorted(found, key=lambda item: item[1])


def _docstrings(source: bytes) -> list[str]:
    """Module, class and function docstrings of a source file, in source order."""
    tree = ast.parse(source)
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                docs.append((getattr(node, "lineno", 0), doc))
    return [doc for _, doc in sorted(docs, key=lambda item: item[0])]


def _stdlib_documents(stats: CorpusStats) -> Iterator[RawDocument]:
    for module, path in _stdlib_files():
        stats.files += 1
        try:
            with open(path, "rb") as f:
                docs = _docstrings(f.read())
        except (SyntaxError, ValueError, OSError):
            stats.note("unparsable_stdlib_files", path)
            continue
        lines = [line for doc in docs for line in (*doc.split("\n"), "")]
        yield RawDocument(f"stdlib:{module}", list(segment.paragraphs(lines)), False)
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return
    for topic in sorted(topics):
        paragraphs = list(segment.paragraphs(topics[topic].split("\n")))
        yield RawDocument(f"stdlib:pydoc_data.topics:{topic}", paragraphs, False)
