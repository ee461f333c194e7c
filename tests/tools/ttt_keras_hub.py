"""Time-to-accuracy peer (issue 20): KerasHub's `BertMaskedLM` on the JAX
backend (keras-hub 0.32, Keras 3), from raw text to a held-out masked-token
accuracy, written in the common curve format (see ttt_peer_common.py). Not a
dependency of bert-jax; needs the `peers` extra.

  python tests/tools/ttt_keras_hub.py \
      --train_dir=../shared/data/books/train --eval_dir=../shared/data/books/eval \
      --out=ttt/keras-hub.jsonl --workdir=/tmp/ttt-kh --layers=4 --hidden=256 --heads=4 \
      --intermediate=1024 --vocab_size=16000 --seq_len=128 --batch_size=64 \
      --learning_rate=5e-4 --warmup_steps=500 --max_steps=20000 --eval_every=250 \
      --eval_batches=16 --target=0.40 --threads=2 --seed=0

What runs, the way KerasHub's guides pretrain from scratch:
  1. data preparation (timed): paragraphs of the books packed into strings of
     about seq_len word pieces (KerasHub pads/truncates each string to
     seq_len and does not pack, so one short paragraph per example would be
     mostly padding); the vocabulary from
     `keras_hub.tokenizers.compute_word_piece_vocabulary` (uncased); the
     held-out set: the first eval_batches x batch_size eval strings, masked
     once by the preprocessor (fixed masks for every evaluation);
  2. training: `BertBackbone` of the given size + `BertMaskedLM` with
     `BertMaskedLMPreprocessor` (15% of tokens selected, 80% [MASK] / 10%
     random / 10% kept, at most ceil(0.15 x seq_len) per sequence) applied by
     `fit` in tf.data; AdamW with bert-jax's recipe (eps 1e-6, weight decay
     0.01 except biases and LayerNorm, global-norm clip 1.0, linear warmup
     then linear decay to 0 at max_steps). A callback evaluates every
     eval_every steps and stops `fit` at the target.
"""

import argparse
import math
import os
import shutil
from pathlib import Path

from ttt_peer_common import (
    Curve,
    PeerError,
    add_common_flags,
    book_files,
    now,
    paragraphs,
    pin_threads,
    require_modules,
    run_main,
    versions,
)

RESERVED = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(p)
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--adam_epsilon", type=float, default=1e-6)
    return p.parse_args()


def pack(paras: list[str], words_per_string: int) -> list[str]:
    """Consecutive paragraphs joined into strings of at most `words_per_string`
    whitespace words (a longer paragraph is cut into such pieces)."""
    out: list[str] = []
    run: list[str] = []
    for para in paras:
        words = para.split()
        while words:
            room = words_per_string - len(run)
            if room <= 0:
                out.append(" ".join(run))
                run, room = [], words_per_string
            run += words[:room]
            words = words[room:]
    if run:
        out.append(" ".join(run))
    return out


def words_per_string(tokenizer, paras: list[str], seq_len: int) -> int:
    """Whitespace words that make about seq_len - 2 word pieces ([CLS] and
    [SEP] take two), from the pieces-per-word of every 200th paragraph."""
    sample = paras[::200] or paras
    pieces = sum(len(t) for t in tokenizer(sample))
    words = sum(len(p.split()) for p in sample)
    return max(1, int((seq_len - 2) * words / max(pieces, 1)))


def make_schedule(keras, peak: float, warmup: int, total: int):
    """The learning-rate schedule of bert-jax's recipe as a Keras schedule."""
    ops = keras.ops

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = ops.cast(step, "float32")
            up = peak * step / max(warmup, 1)
            down = peak * ops.maximum(0.0, (total - step) / max(total - warmup, 1))
            return ops.where(step < warmup, up, down)

        def get_config(self):
            return {"peak": peak, "warmup": warmup, "total": total}

    return Schedule()


def make_eval_fn(model):
    """A jitted forward pass of the MaskedLM without its preprocessor
    (`predict` would tokenize again): (variables, inputs) -> logits at the
    mask positions, [batch, mask_selection_length, vocab]."""
    import jax

    def forward(trainable, non_trainable, x):
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return logits

    return jax.jit(forward)


def masked_accuracy(model, forward, x: dict, y, weights, batch_size: int) -> float:
    """Masked positions predicted correctly / masked positions (padding
    prediction slots have weight 0), over the fixed held-out batches."""
    import numpy as np

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    correct = total = 0.0
    for i in range(0, y.shape[0], batch_size):
        part = {k: v[i : i + batch_size] for k, v in x.items()}
        logits = np.asarray(forward(trainable, non_trainable, part))
        w = weights[i : i + batch_size]
        correct += float(((logits.argmax(-1) == y[i : i + batch_size]) * w).sum())
        total += float(w.sum())
    return correct / max(total, 1.0)


def main() -> None:
    t0 = now()  # raw text: everything from here on counts
    args = parse_args()
    require_modules(
        "ttt_keras_hub",
        ["keras", "keras_hub", "jax", "tensorflow", "tensorflow_text"],
        "'keras-hub==0.32.*' 'keras>=3' jax tensorflow tensorflow-text",
    )
    cpus = pin_threads(args.threads)
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    if keras.backend.backend() != "jax":
        raise PeerError(f"Keras backend is {keras.backend.backend()!r}: run with KERAS_BACKEND=jax")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.set_visible_devices([], "GPU")  # tf.data only; the model runs in JAX
    keras.utils.set_random_seed(args.seed)

    work = Path(args.workdir) / "keras-hub"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train_paras = paragraphs(book_files(args.train_dir))
    eval_paras = paragraphs(book_files(args.eval_dir))
    (work / "train.txt").write_text("".join(p + "\n" for p in train_paras), encoding="utf-8")
    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        [str(work / "train.txt")], args.vocab_size, lowercase=True, reserved_tokens=RESERVED
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    per_string = words_per_string(tokenizer, train_paras, args.seq_len)
    train_strings = pack(train_paras, per_string)
    n_eval = args.eval_batches * args.batch_size
    eval_strings = pack(eval_paras, per_string)[:n_eval]
    if len(eval_strings) < n_eval:
        raise PeerError(
            f"--eval_dir makes {len(eval_strings)} sequences of {args.seq_len} tokens; "
            f"--eval_batches x --batch_size asks for {n_eval}: lower --eval_batches"
        )
    del train_paras, eval_paras
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        tokenizer,
        sequence_length=args.seq_len,
        mask_selection_rate=0.15,
        mask_selection_length=math.ceil(0.15 * args.seq_len),
        mask_token_rate=0.8,
        random_token_rate=0.1,
    )
    ex, ey, ew = preprocessor(tf.constant(eval_strings))
    eval_x = {k: np.asarray(v) for k, v in ex.items()}
    eval_y, eval_w = np.asarray(ey), np.asarray(ew, dtype=np.float32)
    train_ds = (
        tf.data.Dataset.from_tensor_slices(train_strings)
        .shuffle(len(train_strings), seed=args.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(args.batch_size, drop_remainder=True)
    )

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=args.layers,
        num_heads=args.heads,
        hidden_dim=args.hidden,
        intermediate_dim=args.intermediate,
        dropout=0.1,
        max_sequence_length=max(512, args.seq_len),
    )
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=preprocessor)
    optimizer = keras.optimizers.AdamW(
        learning_rate=make_schedule(keras, args.learning_rate, args.warmup_steps, args.max_steps),
        weight_decay=args.weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=args.adam_epsilon,
        global_clipnorm=1.0,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )

    forward = make_eval_fn(model)
    curve = Curve(args.out, t0, args.target, args.max_steps, args.max_train_s)
    curve.header(
        "keras-hub",
        args,
        len(vocab),
        {
            "versions": versions(["keras-hub", "keras", "jax", "jaxlib", "tensorflow", "tensorflow-text"]),
            "cpus": cpus,
            "eval_sequences": n_eval,
            "words_per_string": per_string,
            "train_strings": len(train_strings),
            "notes": "step = optimizer updates done; held-out masks drawn once",
        },
    )

    class RaceCallback(keras.callbacks.Callback):
        """Evaluates the held-out set every eval_every steps; stops at the target."""

        train_t0: float | None = None

        def on_train_begin(self, logs=None):
            RaceCallback.train_t0 = now()

        def on_train_batch_end(self, batch, logs=None):
            step = batch + 1
            if step % args.eval_every and step < args.max_steps:
                return
            acc = masked_accuracy(self.model, forward, eval_x, eval_y, eval_w, args.batch_size)
            if curve.point(now(), RaceCallback.train_t0, step, acc):
                self.model.stop_training = True

    model.fit(train_ds, epochs=1, steps_per_epoch=args.max_steps, callbacks=[RaceCallback()], verbose=0)
    if RaceCallback.train_t0 is None:
        raise PeerError("keras fit never started training")
    curve.finish(RaceCallback.train_t0 - t0, {"last_step": curve.last_step})


if __name__ == "__main__":
    run_main(main)
