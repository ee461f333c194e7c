"""BERT's masked-LM choice for one sequence (google-research/bert `create_masked_lm_predictions`).

Rules, as the original:
* candidates are all positions but [CLS] and [SEP] (and [PAD]);
* with whole-word masking a word (a token and the "##" pieces after it) is
  masked whole or not at all; a word that would overshoot the budget is passed over;
* `num_to_predict = min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))`
  with Python's `round` (half to even) and `len(tokens)` counting [CLS]/[SEP];
* each chosen position: 80% [MASK], 10% unchanged, 10% a uniformly random id
  of the whole vocabulary.
One difference: a "##" piece right after [SEP] starts a word of its own here;
the original glued it to the last word of segment A.

N-gram masking (ALBERT, `ngram_max > 1`): as ALBERT's create_pretraining_data
with `favor_shorter_ngram`, each chosen start word begins a span of n words,
n drawn from 1..ngram_max with probability proportional to 1/n; spans never
overlap, never cross [SEP], and shrink to fewer words rather than overshoot
the budget.
"""

from __future__ import annotations

import numpy as np


def num_to_predict(length: int, masked_lm_prob: float, max_predictions_per_seq: int) -> int:
    """How many positions a sequence of `length` tokens (with [CLS]/[SEP]) gets masked."""
    return min(max_predictions_per_seq, max(1, int(round(length * masked_lm_prob))))


def choose_positions(
    candidates: np.ndarray, word_start: np.ndarray | None, budget: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted positions to predict.

    candidates: int [n] maskable positions in increasing order;
    word_start: bool [n] (True where candidates[i] starts a word) for whole-word
    masking, or None to choose single tokens.
    """
    if word_start is None:
        return np.sort(rng.permutation(candidates)[:budget])
    starts = np.flatnonzero(word_start)
    ends = np.append(starts[1:], len(candidates))
    chosen: list[np.ndarray] = []
    count = 0
    for word in rng.permutation(len(starts)):
        if count >= budget:
            break
        size = ends[word] - starts[word]
        if count + size > budget:
            continue
        chosen.append(candidates[starts[word] : ends[word]])
        count += size
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, candidates.dtype)


def ngram_probabilities(ngram_max: int) -> np.ndarray:
    """P(n) for n = 1..ngram_max, proportional to 1/n (ALBERT's favor_shorter_ngram)."""
    weights = 1.0 / np.arange(1, ngram_max + 1)
    return weights / weights.sum()


def choose_ngram_positions(
    candidates: np.ndarray, word_start: np.ndarray, budget: int, ngram_max: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted positions to predict, masked as spans of 1..ngram_max whole words.

    candidates: int [n] maskable positions in increasing order; word_start: bool
    [n] (all True to treat every token as a word). A span is n consecutive
    words whose positions are contiguous (so it never crosses [SEP]).
    """
    starts = np.flatnonzero(word_start)
    ends = np.append(starts[1:], len(candidates))
    probs = ngram_probabilities(ngram_max)
    covered = np.zeros(len(candidates), bool)
    count = 0
    for word in rng.permutation(len(starts)):
        if count >= budget:
            break
        n = int(rng.choice(ngram_max, p=probs)) + 1
        n = min(n, len(starts) - word)
        while n >= 1:
            lo, hi = starts[word], ends[word + n - 1]
            contiguous = candidates[hi - 1] - candidates[lo] == hi - lo - 1
            if contiguous and count + (hi - lo) <= budget:
                break
            n -= 1
        if n < 1 or covered[lo:hi].any():
            continue
        covered[lo:hi] = True
        count += hi - lo
    return candidates[covered]


def mask_batch(
    input_ids: np.ndarray,
    lengths: np.ndarray,
    maskable: np.ndarray,
    *,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    vocab_size: int,
    mask_id: int,
    rng: np.random.Generator,
    is_continuation: np.ndarray | None = None,
    ngram_max: int = 1,
) -> dict[str, np.ndarray]:
    """Mask a padded batch: the rules of BERT's `create_masked_lm_predictions`, vectorized over rows (per row with whole words).

    input_ids int32 [n, seq]; lengths [n] (unpadded); maskable bool [n, seq]
    (False at [CLS]/[SEP]/padding); is_continuation bool [n, seq] for
    whole-word masking or None; `ngram_max > 1`: spans of up to that many
    words (tokens without `is_continuation`). Returns {"input_ids" [n, seq] masked,
    "masked_lm_positions", "masked_lm_ids" int32 [n, max_predictions_per_seq],
    "masked_lm_weights" float32 [n, max_predictions_per_seq]}, zero-padded.
    """
    n, seq = input_ids.shape
    width = max_predictions_per_seq
    positions = np.zeros((n, width), np.int32)
    budget = np.minimum(width, np.maximum(1, np.round(lengths * masked_lm_prob).astype(np.int64)))
    budget = np.minimum(budget, maskable.sum(axis=1))
    if is_continuation is None and ngram_max <= 1:
        # A uniformly random k-subset per row: the k smallest of i.i.d. keys.
        keys = rng.random((n, seq))
        keys[~maskable] = 2.0
        take = min(width, seq)
        chosen = np.argsort(keys, axis=1)[:, :take]
        valid = np.arange(take)[None, :] < budget[:, None]
        chosen = np.sort(np.where(valid, chosen, seq), axis=1)
        positions[:, :take] = np.where(chosen < seq, chosen, 0)
        counts = budget
    else:
        counts = np.zeros(n, np.int64)
        for row in range(n):
            length = lengths[row]
            candidates = np.flatnonzero(maskable[row, :length])
            if is_continuation is None:
                word_start = np.ones(len(candidates), bool)
            else:
                after = np.zeros(length, bool)
                after[1:] = maskable[row, : length - 1]
                word_start = ~(is_continuation[row, :length] & after)[candidates]
            if ngram_max > 1:
                chosen = choose_ngram_positions(candidates, word_start, int(budget[row]), ngram_max, rng)
            else:
                chosen = choose_positions(candidates, word_start, int(budget[row]), rng)
            positions[row, : len(chosen)] = chosen
            counts[row] = len(chosen)
    weights = (np.arange(width)[None, :] < counts[:, None]).astype(np.float32)
    labels = np.where(weights > 0, np.take_along_axis(input_ids, positions, axis=1), 0).astype(np.int32)
    draw = rng.random((n, width))
    random_ids = rng.integers(0, vocab_size, (n, width))
    replacement = np.where(draw < 0.8, mask_id, np.where(draw < 0.9, labels, random_ids))
    rows, cols = np.nonzero(weights)
    masked = input_ids.copy()
    masked[rows, positions[rows, cols]] = replacement[rows, cols]
    return {
        "input_ids": masked,
        "masked_lm_positions": positions,
        "masked_lm_ids": labels,
        "masked_lm_weights": weights,
    }
