"""Token segments of one document -> pre-training instances (before masking).

A tokenized document is a `Document`: its ids in one array and its sentence
bounds (no empty sentence). Instances are `Instance(tokens_a, tokens_b, label)`; `assemble` lays
one out as `[CLS] A [SEP] B [SEP]` (or `[CLS] A [SEP]` when B is None).

* `nsp` (google-research/bert `create_instances_from_document`, same
  algorithm): chunks of sentences up to a target length (a random shorter
  target with probability short_seq_prob), split at a random sentence into A
  and B; with probability 1/2 (always for a one-sentence chunk) B is instead
  taken from a random start in another document -- label 1 -- and the
  unused sentences go back to the document. `truncate_seq_pair` then trims the
  longer side, front or back at random, until the pair fits.
  The other document is drawn uniformly from the document's *neighbourhood*
  (the other documents of its block, see `create_data`), not the whole corpus.
* `sop` (ALBERT): the same chunks, B always the actual continuation; with
  probability 1/2 A and B are swapped (label 1). A one-sentence chunk is cut
  at a random token instead (one token long: skipped, counted).
* `mlm_packed` (RoBERTa FULL-SENTENCES): `pack_sequences` fills
  max_seq_length - 2 tokens with whole sentences in order, across document
  boundaries (a [SEP] between documents), label 0; a sentence longer than a
  sequence is cut into sequence-sized pieces.
* `packed` (unpadded training, `pack_documents`): every document framed as
  `[CLS] doc [SEP]` (`<s> doc </s>` with a BPE family's tokens), the framed
  documents laid end to end and the stream cut into rows of exactly
  max_seq_length; `document_ids` number the documents of each row 1, 2, ...
  The model attends within a document only and restarts positions at each,
  so a whole document sees exactly the tokens it would see alone in a row.
  A document cut at a row's end goes on at the start of the next (its first
  piece keeps the [CLS], its last the [SEP]). Only the last row is padded.
"""

from __future__ import annotations

import bisect
import collections
from typing import NamedTuple

import numpy as np


class Instance(NamedTuple):
    tokens_a: np.ndarray  # int32 [len_a]
    tokens_b: np.ndarray | None  # int32 [len_b], None for one-segment sequences
    label: int  # 0 = actual next / in order, 1 = random next / swapped


def truncate_pair_lengths(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """(tokens cut from A, from B) by the original's rule: one at a time from the longer side, B on ties.

    Closed form of that loop: the longer side first loses the difference;
    then the two sides alternate, B first.
    """
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return 0, 0
    first = min(excess, abs(len_a - len_b))
    rest = excess - first
    cut_a, cut_b = rest // 2, (rest + 1) // 2
    if len_a > len_b:
        cut_a += first
    else:
        cut_b += first
    return cut_a, cut_b


def _trim(tokens: np.ndarray, cut: int, rng: np.random.Generator) -> np.ndarray:
    """Remove `cut` tokens, each from the front or the back with probability 1/2."""
    if cut == 0:
        return tokens
    front = int((rng.random(cut) < 0.5).sum())
    return tokens[front : len(tokens) - (cut - front)]


def truncate_seq_pair(
    tokens_a: np.ndarray, tokens_b: np.ndarray, max_num_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The original `truncate_seq_pair`: shrink the pair to at most `max_num_tokens` tokens."""
    cut_a, cut_b = truncate_pair_lengths(len(tokens_a), len(tokens_b), max_num_tokens)
    return _trim(tokens_a, cut_a, rng), _trim(tokens_b, cut_b, rng)


def _target_length(max_num_tokens: int, short_seq_prob: float, rng: np.random.Generator) -> int:
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_num_tokens + 1))
    return max_num_tokens


class Document(NamedTuple):
    """A tokenized document: sentence i is `ids[bounds[i]:bounds[i + 1]]`.

    ids: int32 [tokens]; bounds: Python ints, [sentences + 1], strictly
    increasing from 0 (no empty sentence). Python ints because the instance
    loops do scalar arithmetic on them, which NumPy scalars make slower.
    """

    ids: np.ndarray
    bounds: list[int]


def _random_continuation(other: Document, target: int, rng: np.random.Generator) -> np.ndarray:
    """Sentences of `other` from a random start until `target` tokens are reached (or the document ends)."""
    bounds = other.bounds
    start = int(rng.integers(0, len(bounds) - 1))
    end = min(bisect.bisect_left(bounds, bounds[start] + target, lo=start + 1), len(bounds) - 1)
    return other.ids[bounds[start] : bounds[end]]


def pair_instances(
    documents: list[Document],
    index: int,
    *,
    mode: str,
    max_seq_length: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    skipped: collections.Counter,
) -> list[Instance]:
    """NSP or SOP instances of `documents[index]`.

    documents: the neighbourhood; NSP's random next segments come from the
    documents other than `index`. Chunks that cannot make an instance are
    counted in `skipped`. Instances hold views of the documents' ids.
    """
    bounds = documents[index].bounds
    sentences = len(bounds) - 1
    max_num_tokens = max_seq_length - 3
    target = _target_length(max_num_tokens, short_seq_prob, rng)
    instances: list[Instance] = []
    first = 0  # the chunk's first sentence
    i = 0
    while i < sentences:
        if i == sentences - 1 or bounds[i + 1] - bounds[first] >= target:
            size = i + 1 - first
            a_end = first + (int(rng.integers(1, size)) if size >= 2 else 1)
            if mode == "sop":
                instance = _sop_instance(documents[index], first, a_end, i + 1, rng)
            else:
                instance, unused = _nsp_instance(documents, index, first, a_end, i + 1, target, rng)
                i -= unused
            if instance is None:
                skipped[f"{mode}_unusable_chunks"] += 1
            else:
                a, b = truncate_seq_pair(instance.tokens_a, instance.tokens_b, max_num_tokens, rng)
                instances.append(Instance(a, b, instance.label))
            first = i + 1
        i += 1
    return instances


def _nsp_instance(
    documents: list[Document],
    index: int,
    first: int,
    a_end: int,
    end: int,
    target: int,
    rng: np.random.Generator,
) -> tuple[Instance | None, int]:
    """(instance or None, number of chunk sentences handed back to the document).

    The chunk is sentences [first, end) of documents[index]; A is [first, a_end).
    """
    ids, bounds = documents[index]
    tokens_a = ids[bounds[first] : bounds[a_end]]
    if len(documents) > 1 and (end - first == 1 or rng.random() < 0.5):
        other = int(rng.integers(0, len(documents) - 1))
        other += other >= index  # uniform over the documents but this one
        tokens_b = _random_continuation(documents[other], target - len(tokens_a), rng)
        return Instance(tokens_a, tokens_b, 1), end - a_end
    if end - first == 1:
        # No other document in the neighbourhood: nothing can follow a lone segment.
        return None, 0
    return Instance(tokens_a, ids[bounds[a_end] : bounds[end]], 0), 0


def _sop_instance(
    document: Document, first: int, a_end: int, end: int, rng: np.random.Generator
) -> Instance | None:
    ids, bounds = document
    if end - first == 1:
        tokens = ids[bounds[first] : bounds[end]]
        if len(tokens) < 2:
            return None
        cut = int(rng.integers(1, len(tokens)))
        tokens_a, tokens_b = tokens[:cut], tokens[cut:]
    else:
        tokens_a, tokens_b = ids[bounds[first] : bounds[a_end]], ids[bounds[a_end] : bounds[end]]
    if rng.random() < 0.5:
        return Instance(tokens_b, tokens_a, 1)
    return Instance(tokens_a, tokens_b, 0)


def pack_sequences(documents: list[Document], max_seq_length: int, sep_id: int) -> list[Instance]:
    """RoBERTa FULL-SENTENCES packing of consecutive documents into one-segment instances."""
    budget = max_seq_length - 2
    instances: list[Instance] = []
    current: list[np.ndarray] = []
    length = 0

    separator = np.array([sep_id], np.int32)

    def flush() -> None:
        nonlocal current, length
        if current and current[-1] is separator:
            current.pop()  # a document boundary at the very end needs no second [SEP]
        if current:
            instances.append(Instance(np.concatenate(current), None, 0))
        current, length = [], 0

    for d, (ids, bounds) in enumerate(documents):
        if d > 0 and current:
            if length + 1 > budget:
                flush()
            else:
                current.append(separator)
                length += 1
        for s in range(len(bounds) - 1):
            sentence = ids[bounds[s] : bounds[s + 1]]
            for start in range(0, len(sentence), budget):
                piece = sentence[start : start + budget]
                if length + len(piece) > budget:
                    flush()
                current.append(piece)
                length += len(piece)
    flush()
    return instances


class PackedRow(NamedTuple):
    """A row of packed documents, unpadded: `ids` and `documents` (1, 2, ... per document) int32 [n]."""

    ids: np.ndarray
    documents: np.ndarray


def pack_documents(documents: list[Document], max_seq_length: int, cls_id: int, sep_id: int) -> list[PackedRow]:
    """The documents framed `[CLS] doc [SEP]`, in this order, end to end, cut
    into rows of `max_seq_length` tokens (the last row may be shorter)."""
    if not documents:
        return []
    framed, owner = [], []
    for number, doc in enumerate(documents):
        framed += [np.array([cls_id], np.int32), doc.ids.astype(np.int32), np.array([sep_id], np.int32)]
        owner.append(np.full(len(doc.ids) + 2, number, np.int64))
    stream, source = np.concatenate(framed), np.concatenate(owner)
    rows = []
    for start in range(0, len(stream), max_seq_length):
        source_in_row = source[start : start + max_seq_length]
        # 1 for the row's first document, +1 at each change of source document.
        changes = np.concatenate([[1], (source_in_row[1:] != source_in_row[:-1]).astype(np.int32)])
        rows.append(PackedRow(stream[start : start + max_seq_length], np.cumsum(changes).astype(np.int32)))
    return rows


def assemble_packed(rows: list[PackedRow], max_seq_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed rows zero-padded: input_ids, document_ids int32 [n, max_seq_length] and lengths int32 [n]."""
    input_ids = np.zeros((len(rows), max_seq_length), np.int32)
    document_ids = np.zeros((len(rows), max_seq_length), np.int32)
    for r, row in enumerate(rows):
        input_ids[r, : len(row.ids)] = row.ids
        document_ids[r, : len(row.ids)] = row.documents
    lengths = np.array([len(row.ids) for row in rows], np.int32)
    return input_ids, document_ids, lengths


def assemble(
    batch: list[Instance], max_seq_length: int, cls_id: int, sep_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay instances out as `[CLS] A [SEP] (B [SEP])`, zero-padded.

    Returns input_ids int32 [n, max_seq_length], segment_ids int32 [n, max_seq_length]
    (1 on B and its [SEP]) and lengths int32 [n] (tokens before the padding).
    Vectorized: one concatenation of all segments, scattered by computed positions.
    """
    n = len(batch)
    len_a = np.fromiter((len(inst.tokens_a) for inst in batch), np.int64, count=n)
    len_b = np.fromiter(
        (-1 if inst.tokens_b is None else len(inst.tokens_b) for inst in batch), np.int64, count=n
    )
    has_b = len_b >= 0
    len_b = np.maximum(len_b, 0)
    lengths = (2 + len_a + len_b + has_b).astype(np.int32)
    input_ids = np.zeros((n, max_seq_length), np.int32)
    segment_ids = np.zeros((n, max_seq_length), np.int32)
    rows = np.arange(n)
    input_ids[:, 0] = cls_id
    input_ids[rows, 1 + len_a] = sep_id
    input_ids[rows[has_b], lengths[has_b] - 1] = sep_id
    columns = np.arange(max_seq_length)[None, :]
    segment_ids[(columns >= (2 + len_a)[:, None]) & (columns < lengths[:, None])] = 1
    pieces = [t for inst in batch for t in (inst.tokens_a, inst.tokens_b) if t is not None]
    if pieces:
        # Row r's A starts at column 1, its B at 2 + len_a[r]: each piece's
        # tokens go to consecutive flat positions from its start.
        starts = np.stack([rows * max_seq_length + 1, rows * max_seq_length + 2 + len_a], axis=1)
        sizes = np.stack([len_a, len_b], axis=1)
        keep = np.stack([np.ones(n, bool), has_b], axis=1)
        starts, sizes = starts[keep], sizes[keep]
        ends = np.cumsum(sizes)
        flat_positions = np.repeat(starts - (ends - sizes), sizes) + np.arange(int(ends[-1]))
        input_ids.reshape(-1)[flat_positions] = np.concatenate(pieces)
    return input_ids, segment_ids, lengths
