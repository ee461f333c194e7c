"""Dynamic masked-LM masking in the tf.data graph: a pure function of (seed, example id, epoch).

`example_uniforms` draws an example's random numbers with stateless ops whose
seed is folded from (seed, epoch, example id), so a resumed run, or one on
another number of hosts, masks each example exactly as before. `mask_batch`
turns those numbers into masks with batched ops (no per-example Python).

The procedure follows the original BERT's `create_masked_lm_predictions`:
budget = min(max_predictions_per_seq, max(1, round(n * masked_lm_prob))) where
n counts the maskable tokens (real tokens that are not [CLS]/[SEP]/[PAD]);
(whole) words are taken in random order, skipping a word that would overflow
the budget; each chosen token becomes [MASK] 80% of the time, stays 10% and becomes
a random non-special vocab token 10%.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow as tf

from bert_jax.errors import ConfigError

# Rows of `example_uniforms`: word order, 80/10/10 action, replacement token.
ORDER, ACTION, REPLACEMENT = 0, 1, 2
NUM_UNIFORMS = 3
_BRACKETED = re.compile(r"^\[[^\]]+\]$")


@dataclasses.dataclass(frozen=True, eq=False)
class MaskingOptions:
    """What dynamic masking needs to know about the vocabulary and the budget.

    never_mask_ids: ids never chosen as predictions ([CLS], [SEP], [PAD]).
    special_ids: ids never drawn as random replacements (every "[...]" token).
    is_continuation: bool [vocab_size], True for "##" pieces; given -> whole-word masking.
    """

    vocab_size: int
    mask_id: int
    never_mask_ids: tuple[int, ...]
    special_ids: tuple[int, ...]
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    is_continuation: np.ndarray | None = None

    def __post_init__(self):
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise ConfigError(f"masked_lm_prob is {self.masked_lm_prob}; use a value in (0, 1], e.g. 0.15")
        if self.max_predictions_per_seq < 1:
            raise ConfigError(f"max_predictions_per_seq is {self.max_predictions_per_seq}; use at least 1")
        if not 0 <= self.mask_id < self.vocab_size:
            raise ConfigError(f"mask_id {self.mask_id} is outside the vocab of {self.vocab_size} ids")
        if len(set(self.special_ids)) >= self.vocab_size:
            raise ConfigError("every vocab id is special: no token is left for random replacements")
        if self.is_continuation is not None and np.shape(self.is_continuation) != (self.vocab_size,):
            raise ConfigError(
                f"is_continuation has shape {np.shape(self.is_continuation)}; "
                f"it must be a bool array [vocab_size={self.vocab_size}]"
            )

    @property
    def whole_word(self) -> bool:
        return self.is_continuation is not None

    @classmethod
    def from_tokens(
        cls,
        tokens: list[str],
        *,
        masked_lm_prob: float = 0.15,
        max_predictions_per_seq: int = 20,
        whole_word_mask: bool = False,
    ) -> MaskingOptions:
        """Options for a vocab given as its token list, index = id (`tokenization.load_vocab(path)`)."""
        index = {token: i for i, token in enumerate(tokens)}
        missing = [t for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]") if t not in index]
        if missing:
            raise ConfigError(f"the vocab lacks {' '.join(missing)}; dynamic masking needs them")
        continuation = np.array([t.startswith("##") for t in tokens], bool)
        return cls(
            vocab_size=len(tokens),
            mask_id=index["[MASK]"],
            never_mask_ids=tuple(index[t] for t in ("[CLS]", "[SEP]", "[PAD]")),
            special_ids=tuple(i for i, t in enumerate(tokens) if _BRACKETED.match(t)),
            masked_lm_prob=masked_lm_prob,
            max_predictions_per_seq=max_predictions_per_seq,
            is_continuation=continuation if whole_word_mask else None,
        )


def example_uniforms(seed: int, epoch: tf.Tensor, example_id: tf.Tensor, seq_length: int) -> tf.Tensor:
    """float32 [NUM_UNIFORMS, seq_length] in [0, 1): a pure function of (seed, epoch, example_id)."""
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 0x6D61736B], tf.int64), tf.cast(epoch, tf.int64)
    )
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(example_id, tf.int64))
    return tf.random.stateless_uniform([NUM_UNIFORMS, seq_length], key, dtype=tf.float32)


class DynamicMasker:
    """Holds the vocab lookup tables; `__call__` masks a batch (graph-safe)."""

    def __init__(self, options: MaskingOptions):
        self.options = options
        never = np.zeros(options.vocab_size, bool)
        never[list(options.never_mask_ids)] = True
        self._never_mask = tf.constant(never)
        continuation = options.is_continuation if options.whole_word else np.zeros(options.vocab_size, bool)
        self._continuation = tf.constant(np.asarray(continuation, bool))
        special = set(options.special_ids)
        self._replacements = tf.constant([i for i in range(options.vocab_size) if i not in special], tf.int32)

    def __call__(
        self, input_ids: tf.Tensor, input_mask: tf.Tensor, uniforms: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Mask a batch.

        input_ids, input_mask: int32 [batch, seq]; uniforms: float32 [batch, NUM_UNIFORMS, seq]
        (`example_uniforms` of each example). Returns input_ids (masked), int32
        masked_lm_positions / masked_lm_ids and float32 masked_lm_weights
        [batch, max_predictions_per_seq], sorted by position, padded with 0 (weight 0).
        """
        masked = self.choose(input_ids, input_mask, uniforms[:, ORDER])
        return {
            "input_ids": self._replace(input_ids, masked, uniforms[:, ACTION], uniforms[:, REPLACEMENT]),
            **self._predictions(input_ids, masked),
        }

    def choose(self, input_ids: tf.Tensor, input_mask: tf.Tensor, order_keys: tf.Tensor) -> tf.Tensor:
        """bool [batch, seq]: the positions to predict (whole words when whole-word masking)."""
        maskable = (input_mask > 0) & ~tf.gather(self._never_mask, input_ids)
        if self.options.whole_word:
            return self._choose_words(input_ids, maskable, order_keys)
        # Every word is one piece: the `budget` maskable positions with the smallest keys.
        seq = tf.shape(input_ids)[1]
        width = tf.minimum(self.options.max_predictions_per_seq, seq)
        _, smallest = tf.math.top_k(-tf.where(maskable, order_keys, 2.0), k=width)
        taken = tf.range(width)[None, :] < self.budget(maskable)[:, None]
        rows = tf.broadcast_to(tf.range(tf.shape(input_ids)[0])[:, None], tf.shape(smallest))
        indices = tf.stack([rows, smallest], axis=-1)
        return tf.scatter_nd(indices, tf.cast(taken, tf.int32), tf.shape(input_ids)) > 0

    def _choose_words(self, input_ids: tf.Tensor, maskable: tf.Tensor, order_keys: tf.Tensor) -> tf.Tensor:
        batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        # A "##" piece continues the word before it only when that token is maskable too.
        previous = tf.pad(maskable[:, :-1], [[0, 0], [1, 0]])
        continues = tf.gather(self._continuation, input_ids) & maskable & previous
        starts = maskable & ~continues
        # One segment per (row, word): the word index is the number of starts so far.
        word = tf.maximum(tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1, 0)
        segment = word + tf.range(batch)[:, None] * seq
        word_length = tf.math.unsorted_segment_sum(tf.cast(maskable, tf.int32), segment, batch * seq)
        length_at_start = tf.where(starts, tf.gather(word_length, segment), 0)
        # Words in random order; non-starts (key 2) sort last and have length 0.
        order = tf.argsort(tf.where(starts, order_keys, 2.0), axis=1, stable=True)
        lengths = tf.gather(length_at_start, order, batch_dims=1)
        chosen_in_order = _take_greedily(lengths, self.budget(maskable))
        chosen_starts = tf.gather(chosen_in_order, tf.argsort(order, axis=1), batch_dims=1)
        chosen_words = tf.math.unsorted_segment_max(tf.cast(chosen_starts, tf.int32), segment, batch * seq)
        return maskable & (tf.gather(chosen_words, segment) > 0)

    def budget(self, maskable: tf.Tensor) -> tf.Tensor:
        """int32 [batch]: min(max_predictions, max(1, round(n * masked_lm_prob))), 0 when n == 0."""
        count = tf.reduce_sum(tf.cast(maskable, tf.int32), axis=1)
        wanted = tf.cast(tf.round(tf.cast(count, tf.float32) * self.options.masked_lm_prob), tf.int32)
        wanted = tf.minimum(tf.maximum(wanted, 1), self.options.max_predictions_per_seq)
        return tf.where(count > 0, wanted, 0)

    def _replace(self, input_ids, masked, action, replacement):
        """80% [MASK], 10% unchanged, 10% a random non-special token."""
        count = tf.shape(self._replacements)[0]
        index = tf.minimum(tf.cast(replacement * tf.cast(count, tf.float32), tf.int32), count - 1)
        random_ids = tf.gather(self._replacements, index)
        ids = tf.where(masked & (action >= 0.9), random_ids, input_ids)
        return tf.where(masked & (action < 0.8), self.options.mask_id, ids)

    def _predictions(self, input_ids, masked):
        seq = tf.shape(input_ids)[1]
        width = self.options.max_predictions_per_seq
        # The largest of seq - position are the first masked positions; unmasked score 0.
        score, _ = tf.math.top_k(tf.where(masked, seq - tf.range(seq)[None, :], 0), k=tf.minimum(width, seq))
        score = tf.pad(score, [[0, 0], [0, tf.maximum(width - seq, 0)]])
        valid = score > 0
        positions = tf.where(valid, seq - score, 0)
        return {
            "masked_lm_positions": positions,
            "masked_lm_ids": tf.where(valid, tf.gather(input_ids, positions, batch_dims=1), 0),
            "masked_lm_weights": tf.cast(valid, tf.float32),
        }


def _take_greedily(lengths: tf.Tensor, budget: tf.Tensor) -> tf.Tensor:
    """bool [batch, words]: walk the words in order, taking each that still fits the budget.

    lengths: int32 [batch, words] (0 = no word); budget: int32 [batch]. Stops
    early once every row is full, so the loop runs about budget / word length steps.
    """
    words = tf.shape(lengths)[1]
    columns = tf.range(words)[None, :]

    def fits_more(k, taken, chosen):
        return (k < words) & tf.reduce_any(taken < budget)

    def step(k, taken, chosen):
        length = lengths[:, k]
        fits = (length > 0) & (taken + length <= budget)
        taken = taken + tf.where(fits, length, 0)
        return k + 1, taken, chosen | ((columns == k) & fits[:, None])

    _, _, chosen = tf.while_loop(
        fits_more, step, (tf.constant(0), tf.zeros_like(budget), tf.zeros_like(lengths, tf.bool))
    )
    return chosen
