"""ALBERT's n-gram masking: spans of 1..N words, P(n) proportional to 1/n."""

import numpy as np
import pytest

from bert_jax.data import masking
from bert_jax.errors import ConfigError


def test_ngram_probabilities_favour_shorter_spans():
    np.testing.assert_allclose(masking.ngram_probabilities(3), np.array([6, 3, 2]) / 11)
    np.testing.assert_allclose(masking.ngram_probabilities(1), [1.0])


def _spans(positions):
    """Maximal runs of consecutive positions, as lengths."""
    runs, run = [], 1
    for a, b in zip(positions[:-1], positions[1:], strict=True):
        if b == a + 1:
            run += 1
        else:
            runs.append(run)
            run = 1
    return runs + [run] if len(positions) else []


def test_span_lengths_follow_one_over_n_and_respect_the_budget():
    rng = np.random.default_rng(0)
    candidates = np.arange(1, 1001)  # one long segment: every token a word
    word_start = np.ones(1000, bool)
    lengths = []
    for _ in range(300):
        chosen = masking.choose_ngram_positions(candidates, word_start, 20, 3, rng)
        assert len(chosen) <= 20 and len(set(chosen)) == len(chosen)
        assert np.all(np.diff(chosen) > 0)
        lengths += _spans(list(chosen))
    counts = np.bincount(lengths, minlength=7)[1:]
    # Adjacent spans merge into longer runs now and then, so runs of 1-3
    # dominate; their shares sit near 6:3:2 (shorter spans fill the budget's end).
    share = counts[:3] / counts[:3].sum()
    assert share[0] > share[1] > share[2] > 0.08
    assert counts[3:].sum() < 0.1 * counts.sum()


def test_spans_keep_words_whole_and_never_cross_a_gap():
    rng = np.random.default_rng(1)
    # Positions 1-6 are segment A, 8-13 segment B ([SEP] at 7); words: [1,2] [3] [4,5,6] | [8] [9,10] [11,12,13]
    candidates = np.array([1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13])
    word_start = np.array([1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0], bool)
    words = [{1, 2}, {3}, {4, 5, 6}, {8}, {9, 10}, {11, 12, 13}]
    for _ in range(200):
        chosen = set(masking.choose_ngram_positions(candidates, word_start, 6, 3, rng).tolist())
        assert 1 <= len(chosen) <= 6
        for w in words:
            assert not (w & chosen) or w <= chosen  # a word is masked whole or not at all
        assert 7 not in chosen


def test_mask_batch_with_ngrams_masks_the_budget_and_no_special_tokens():
    rng = np.random.default_rng(2)
    n, seq = 64, 32
    ids = rng.integers(10, 100, (n, seq)).astype(np.int32)
    ids[:, 0], ids[:, 15], ids[:, 31] = 2, 3, 3  # [CLS] a [SEP] b [SEP]
    lengths = np.full(n, seq)
    maskable = np.ones((n, seq), bool)
    maskable[:, [0, 15, 31]] = False
    out = masking.mask_batch(
        ids, lengths, maskable, masked_lm_prob=0.15, max_predictions_per_seq=8,
        vocab_size=100, mask_id=4, rng=rng, ngram_max=3,
    )
    counts = out["masked_lm_weights"].sum(axis=1)
    assert counts.max() <= 5 and counts.min() >= 1  # round(32 * 0.15) = 5
    for row in range(n):
        k = int(counts[row])
        positions = out["masked_lm_positions"][row, :k]
        assert not set(positions.tolist()) & {0, 15, 31}
        np.testing.assert_array_equal(out["masked_lm_ids"][row, :k], ids[row, positions])


def test_create_data_refuses_ngram_max_below_one():
    from bert_jax.data.create_data import CreateDataOptions

    with pytest.raises(ConfigError, match="ngram_max 0"):
        CreateDataOptions(vocab_file="v.txt", ngram_max=0).validate()
