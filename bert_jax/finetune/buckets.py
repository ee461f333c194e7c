"""Length buckets: cut a fine-tuning batch's trailing padding columns (NumPy only).

SST-2 sentences average about ten words, so at `max_seq_length=64` most of a
padded row is padding. Each batch is cut to the smallest of a few lengths (its
*bucket*) that holds its longest example, so the step computes on little
padding and only a few shapes ever compile (one per bucket).

Cutting trailing columns changes no result beyond float rounding: padding is
masked out of attention and out of every loss, positions count from 0 at the
left (absolute tables, RoBERTa's cumulative offsets and RoPE alike), and the
token head's `labels`/`weights [batch, seq]` are cut with the inputs (their cut
columns carry weight 0: `needed_length` counts them).

`config.length_buckets`: None (the default) is `auto_buckets(max_seq_length)`;
`()` turns bucketing off (every batch `max_seq_length` wide, as before); a
tuple of increasing lengths >= 8 and <= max_seq_length is used as given, with
`max_seq_length` itself always the last bucket.
"""

from __future__ import annotations

import numpy as np

from bert_jax.errors import ConfigError

MIN_BUCKET = 8
# Inputs that are `[batch, seq]` for every head; the token head's targets too
# (`TOKEN_TARGETS`, when they are 2-D).
SEQ_INPUTS = ("input_ids", "input_mask", "segment_ids")
TOKEN_TARGETS = ("labels", "weights")
# The span head's loss is a softmax over every position, padding included, and
# SQuAD's decoding ranks positions of the full row: cutting columns would change
# both, so span tasks keep the padded path.
UNBUCKETED_HEADS = ("span",)


def auto_buckets(max_seq_length: int) -> tuple[int, ...]:
    """Multiples of 16 up to 64, then powers of two, below `max_seq_length`,
    then `max_seq_length`: (16, 32, 48, 64) for 64, (16, 32, 48, 64, 128) for
    128, seven shapes for 512."""
    small = [b for b in (16, 32, 48, 64) if b < max_seq_length]
    large, b = [], 128
    while b < max_seq_length:
        large.append(b)
        b *= 2
    return (*small, *large, max_seq_length)


def resolve(value, max_seq_length: int) -> tuple[int, ...]:
    """The buckets of `config.length_buckets` (see the module docstring), or
    `()` for the padded path; ConfigError naming the key for a bad value."""
    if value is None:
        return auto_buckets(max_seq_length)
    key = f"config.length_buckets={tuple(value) if isinstance(value, list) else value!r}"
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in value
    ):
        raise ConfigError(f"{key} must be a tuple of sequence lengths, e.g. (16, 32, 64); () turns bucketing off")
    value = tuple(int(b) for b in value)
    if not value:
        return ()
    if min(value) < MIN_BUCKET:
        raise ConfigError(f"{key} has {min(value)} < {MIN_BUCKET}; use lengths of at least {MIN_BUCKET}")
    if any(b >= c for b, c in zip(value[:-1], value[1:], strict=True)):
        raise ConfigError(f"{key} is not strictly increasing; list the lengths smallest first, e.g. (16, 32, 64)")
    if value[-1] > max_seq_length:
        raise ConfigError(
            f"{key} has {value[-1]} > config.max_seq_length={max_seq_length}; drop it or raise max_seq_length"
        )
    return value if value[-1] == max_seq_length else (*value, max_seq_length)


def for_head(head: str, buckets: tuple[int, ...]) -> tuple[int, ...]:
    """The buckets a head runs with: `()` (padded) for `UNBUCKETED_HEADS`."""
    return () if head in UNBUCKETED_HEADS else tuple(buckets)


def needed_length(batch: dict[str, np.ndarray]) -> int:
    """Columns that must stay: up to the last real token of any row (`input_mask`),
    or the last weighted position of a 2-D `weights` (token labels)."""
    last = 0
    for key in ("input_mask", "weights"):
        arr = batch.get(key)
        if arr is not None and arr.ndim == 2:
            cols = np.flatnonzero(np.any(arr != 0, axis=0))
            if len(cols):
                last = max(last, int(cols[-1]) + 1)
    return last


def choose(length: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket >= `length`; the largest one when none is."""
    for b in buckets:
        if b >= length:
            return b
    return buckets[-1]


def trim(batch: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """`batch` with its `[batch, seq]` arrays (inputs, 2-D token targets) cut to
    `length` columns; the other arrays unchanged."""
    seq_keys = {*SEQ_INPUTS, *(k for k in TOKEN_TARGETS if k in batch and batch[k].ndim == 2)}
    return {k: (v[:, :length] if k in seq_keys else v) for k, v in batch.items()}


def to_bucket(batch: dict[str, np.ndarray], buckets: tuple[int, ...]) -> dict[str, np.ndarray]:
    """`batch` cut to the bucket of its longest example; unchanged when
    `buckets` is `()`."""
    if not buckets:
        return batch
    return trim(batch, choose(needed_length(batch), buckets))


def lengths(input_mask: np.ndarray) -> np.ndarray:
    """`[n]`: each row's length up to its last real token."""
    real = np.asarray(input_mask) != 0
    return np.where(real.any(axis=1), real.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)


def length_order(input_mask: np.ndarray) -> np.ndarray:
    """Row indices sorted by length (stable), so evaluation batches rows of
    similar length; `np.argsort` of it restores the original order."""
    return np.argsort(lengths(input_mask), kind="stable")


def pad_columns(x: np.ndarray, width: int) -> np.ndarray:
    """`x [batch, seq, ...]` padded with zeros on axis 1 to `width` columns
    (the token head's outputs, back to `max_seq_length` after a cut)."""
    if x.shape[1] == width:
        return x
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, width - x.shape[1])
    return np.pad(x, pad)
