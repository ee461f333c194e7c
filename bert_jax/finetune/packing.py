"""Packed fine-tuning batches: several short examples per row (NumPy only).

SST-2 sentences average about a dozen tokens, so even cut to its length bucket
(`bert_jax.finetune.buckets`) a batch is mostly padding. A *packed* batch puts
whole examples side by side in rows of `width` columns, each with its own
document id (1, 2, ... in a row; 0 for the padding at a row's end). The model
attends block-diagonally by document and restarts positions at each one
(`BertModel(document_ids=...)`), so an example's states equal its states alone
in a row; the classifier reads each example's first token ([CLS]) through
`pool_positions`, and the outputs come back `[batch, ...]` in the batch's own
order, so labels, weights and losses are untouched.

A batch of `B` examples becomes `rows` rows, `rows` rounded up to a multiple of
`row_step` so only a few shapes ever compile; `width` is the smallest of the
length buckets that holds the longest example, and at least `MIN_WIDTH`
(a row narrower than that holds too few examples to be worth a shape).

Only the sequence heads (classification, regression) pack: a token or span
head reads every position of its own row.
"""

from __future__ import annotations

import numpy as np

from bert_jax.finetune import buckets as length_buckets

PACKED_HEADS = ("classification", "regression")
MIN_WIDTH = 64
# Keys of a packed batch beside the padded batch's `[rows, width]` inputs.
DOCUMENT_IDS = "document_ids"
POOL_POSITIONS = "pool_positions"


def row_step(batch_size: int, multiple: int = 1) -> int:
    """Rows are counted in steps of `batch_size / 8` (at least 1), rounded up
    to a multiple of `multiple` (the mesh's data-parallel size), so a batch
    compiles one of at most eight shapes per width."""
    step = max(1, batch_size // 8)
    return -(-step // multiple) * multiple


def pack_width(longest: int, buckets: tuple[int, ...]) -> int:
    """The row width for a batch whose longest example has `longest` tokens:
    its bucket, but at least `MIN_WIDTH` (or the largest bucket, if smaller)."""
    return length_buckets.choose(max(longest, min(MIN_WIDTH, buckets[-1])), buckets)


def first_fit(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Places examples of `lengths [B]` tokens (each <= `width`) in rows:
    longest first, each in the first row with room (first-fit decreasing;
    ties keep the batch order, so the layout is a function of the batch).
    Returns `(row [B], start [B])`: each example's row and first column."""
    row, start = np.zeros(len(lengths), np.int64), np.zeros(len(lengths), np.int64)
    used: list[int] = []
    for i in np.argsort(-lengths, kind="stable"):
        n = int(lengths[i])
        r = next((r for r, filled in enumerate(used) if filled + n <= width), len(used))
        if r == len(used):
            used.append(0)
        row[i], start[i] = r, used[r]
        used[r] += n
    return row, start


def pack(batch: dict[str, np.ndarray], buckets: tuple[int, ...], step: int = 1) -> dict[str, np.ndarray]:
    """`batch` (`[B, seq]` inputs and `[B]` targets) as a packed batch:
    `input_ids`, `input_mask`, `segment_ids`, `document_ids [rows, width]`,
    `pool_positions [B]` (row * width + first column of each example), the
    other `[B]` arrays unchanged. `rows` is a multiple of `step`. An example
    with no real token (a weight-0 filler) takes one column of its own."""
    mask = batch["input_mask"]
    lengths = np.maximum(length_buckets.lengths(mask), 1)
    width = pack_width(int(lengths.max()), buckets)
    row, start = first_fit(lengths, width)
    rows = -(-(int(row.max()) + 1) // step) * step
    out = {k: np.zeros((rows, width), batch[k].dtype) for k in length_buckets.SEQ_INPUTS}
    docs = np.zeros((rows, width), np.int32)
    for i in range(len(lengths)):
        r, s, n = row[i], start[i], lengths[i]
        for k in length_buckets.SEQ_INPUTS:
            out[k][r, s : s + n] = batch[k][i, :n]
        # Ids count up along the row: the model finds documents where the id changes.
        docs[r, s : s + n] = 1 + int(np.count_nonzero((row == r) & (start < s)))
    out[DOCUMENT_IDS] = docs
    out[POOL_POSITIONS] = (row * width + start).astype(np.int32)
    seq = set(length_buckets.SEQ_INPUTS)
    out.update({k: v for k, v in batch.items() if k not in seq})
    return out
