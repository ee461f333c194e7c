"""Time-to-accuracy peer (issue 20): Hugging Face's Flax MLM example,
`examples/flax/language-modeling/run_mlm_flax.py` (transformers 4.x), from raw
text to a held-out masked-token accuracy, written in the common curve format
(see ttt_peer_common.py). Not a dependency of bert-jax; needs the `peers`
extra, and the example script itself (not shipped with the transformers
wheel: take it from the transformers repository at a 4.x commit):

  python tests/tools/ttt_hf_flax.py --run_mlm_flax=/path/to/run_mlm_flax.py \
      --train_dir=../shared/data/books/train --eval_dir=../shared/data/books/eval \
      --out=ttt/hf-flax.jsonl --workdir=/tmp/ttt-hf --layers=4 --hidden=256 --heads=4 \
      --intermediate=1024 --vocab_size=16000 --seq_len=128 --batch_size=64 \
      --learning_rate=5e-4 --warmup_steps=500 --max_steps=20000 --eval_every=250 \
      --eval_batches=16 --target=0.40 --threads=2 --seed=0

What runs, in the example README's order:
  1. data preparation (timed): paragraphs of the books, one per line, into
     train.txt and validation.txt; a BERT WordPiece tokenizer trained with the
     `tokenizers` library (the README trains a ByteLevelBPE for RoBERTa; for
     `--model_type=bert` the matching tokenizer is WordPiece, uncased) and a
     BertConfig of the given size written next to it;
  2. run_mlm_flax.py as a subprocess, grouped-text mode (its default, what its
     README runs): it tokenizes and groups the text itself (also data
     preparation: until its training loop starts), then trains.
The example has no max_steps and no early stop, and shows eval accuracy only
in TensorBoard: the driver reads the `eval_accuracy` events (with their wall
times) from its output folder as they are written, and ends the process
group at the target or at max_steps.
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
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

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# datasets.map's default batch: group_texts drops each batch's remainder.
MAP_BATCH_ROWS = 1000
EPOCH_BAR = re.compile(r"Epoch \.\.\. \(1/")
# The example's last revisions (through 2025) import send_example_telemetry,
# a usage ping that transformers dropped from transformers.utils later in 4.x:
# the launcher supplies a no-op in its place and runs the script unmodified.
LAUNCHER = (
    "import runpy, sys\n"
    "import transformers.utils as u\n"
    "if not hasattr(u, 'send_example_telemetry'):\n"
    "    u.send_example_telemetry = lambda *a, **k: None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(p)
    p.add_argument("--run_mlm_flax", required=True, help="path of transformers' run_mlm_flax.py (4.x)")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--adam_epsilon", type=float, default=1e-6)
    return p.parse_args()


def write_lines(path: Path, rows: list[str]) -> None:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def train_tokenizer(train_txt: Path, vocab_size: int, folder: Path):
    """BERT WordPiece (uncased) trained on the training text, saved the way
    AutoTokenizer loads it (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train(files=[str(train_txt)], vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return tok


def write_model_config(folder: Path, args: argparse.Namespace, vocab_size: int) -> None:
    """BertConfig of the race size (BERT's defaults otherwise: GELU, dropout 0.1)."""
    config = {
        "model_type": "bert",
        "architectures": ["BertForMaskedLM"],
        "vocab_size": vocab_size,
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "intermediate_size": args.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max(512, args.seq_len),
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def held_out_prefix(tok, paras: list[str], seq_len: int, n_seq: int) -> list[str]:
    """The shortest prefix of the eval paragraphs that run_mlm_flax turns into
    exactly `n_seq` sequences (the same held-out text every evaluation).

    Mirrors its group_texts: each datasets.map batch of 1000 rows is
    concatenated and cut into seq_len blocks, the batch's remainder dropped."""
    done, pending = 0, 0
    for k, enc in enumerate(tok.encode_batch(paras), start=1):
        pending += len(enc.ids)
        if done + pending // seq_len >= n_seq:
            return paras[:k]
        if k % MAP_BATCH_ROWS == 0:
            done, pending = done + pending // seq_len, 0
    raise PeerError(
        f"--eval_dir holds {done + pending // seq_len} sequences of {seq_len} tokens; "
        f"--eval_batches x --batch_size asks for {n_seq}: lower --eval_batches"
    )


def steps_per_epoch_estimate(tok, paras: list[str], seq_len: int, batch_size: int) -> int:
    """Training steps in one epoch, from the token count of every 50th
    paragraph (tokenizing everything would add its time to the peer's)."""
    sample = paras[::50]
    tokens = sum(len(e.ids) for e in tok.encode_batch(sample))
    chars = sum(len(p) for p in sample)
    total_tokens = tokens / max(chars, 1) * sum(len(p) for p in paras)
    return max(1, int(total_tokens // seq_len) // batch_size)


def example_command(args: argparse.Namespace, folder: Path, out_dir: Path, epochs: int) -> list[str]:
    """run_mlm_flax.py's command line, as its README runs it (grouped text)."""
    return [
        sys.executable,
        "-c",
        LAUNCHER,
        args.run_mlm_flax,
        f"--output_dir={out_dir}",
        "--overwrite_output_dir",
        "--model_type=bert",
        f"--config_name={folder}",
        f"--tokenizer_name={folder}",
        f"--cache_dir={folder / 'cache'}",
        f"--train_file={folder / 'train.txt'}",
        f"--validation_file={folder / 'validation.txt'}",
        f"--max_seq_length={args.seq_len}",
        f"--preprocessing_num_workers={args.threads}",
        "--do_train",
        f"--per_device_train_batch_size={args.batch_size}",
        f"--per_device_eval_batch_size={args.batch_size}",
        f"--learning_rate={args.learning_rate}",
        f"--warmup_steps={args.warmup_steps}",
        f"--weight_decay={args.weight_decay}",
        "--adam_beta1=0.9",
        "--adam_beta2=0.999",
        f"--adam_epsilon={args.adam_epsilon}",
        f"--num_train_epochs={epochs}",
        f"--logging_steps={args.eval_every}",
        f"--eval_steps={args.eval_every}",
        # No checkpoints during the race (the first save would come after it).
        f"--save_steps={10**9}",
        f"--seed={args.seed}",
    ]


class OutputWatcher(threading.Thread):
    """Copies the example's merged stdout/stderr to a log and notes when its
    training loop starts (the first 'Epoch ... (1/N)' progress bar)."""

    def __init__(self, stream, log_path: Path):
        super().__init__(daemon=True)
        self.stream = stream
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed at end of run()
        self.train_t0: float | None = None
        self.tail = b""

    def run(self) -> None:
        while chunk := self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(4096):
            self.log.write(chunk)
            self.log.flush()
            self.tail = (self.tail + chunk)[-4000:]
            if self.train_t0 is None and EPOCH_BAR.search(self.tail.decode("utf-8", "replace")):
                self.train_t0 = now()
        self.log.close()


class EvalEvents:
    """New `eval_accuracy` scalars in the example's TensorBoard files, with
    the wall time TensorBoard stamped on each (when it was written)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.loaders: dict[Path, object] = {}

    def poll(self) -> list[tuple[float, int, float]]:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util

        found = []
        for path in sorted(self.folder.glob("events.out.tfevents.*")):
            loader = self.loaders.setdefault(path, EventFileLoader(str(path)))
            for event in loader.Load():
                for value in event.summary.value:
                    if value.tag == "eval_accuracy":
                        acc = (
                            float(tensor_util.make_ndarray(value.tensor))
                            if value.HasField("tensor")
                            else value.simple_value
                        )
                        found.append((event.wall_time, int(event.step), acc))
        return found


def stop_group(proc: subprocess.Popen) -> None:
    """End the example and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    t0 = now()  # raw text: everything from here on counts
    args = parse_args()
    require_modules(
        "ttt_hf_flax",
        ["transformers", "flax", "optax", "datasets", "tokenizers", "tensorboard", "tensorflow"],
        "'transformers>=4.40,<5' flax optax datasets tokenizers tensorboard tensorflow",
    )
    if not Path(args.run_mlm_flax).is_file():
        raise PeerError(
            f"--run_mlm_flax={args.run_mlm_flax}: no such file; pass transformers' example script"
        )
    cpus = pin_threads(args.threads)
    work = Path(args.workdir) / "hf-flax"
    shutil.rmtree(work, ignore_errors=True)  # a fresh datasets cache: no run reuses another's preparation
    work.mkdir(parents=True)
    out_dir = work / "output"

    train_paras = paragraphs(book_files(args.train_dir))
    eval_paras = paragraphs(book_files(args.eval_dir))
    write_lines(work / "train.txt", train_paras)
    tok = train_tokenizer(work / "train.txt", args.vocab_size, work)
    vocab = tok.get_vocab_size()
    n_eval = args.eval_batches * args.batch_size
    write_lines(work / "validation.txt", held_out_prefix(tok, eval_paras, args.seq_len, n_eval))
    write_model_config(work, args, vocab)
    per_epoch = steps_per_epoch_estimate(tok, train_paras, args.seq_len, args.batch_size)
    epochs = max(1, math.ceil(args.max_steps / per_epoch))
    del tok, train_paras, eval_paras

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # TensorFlow is installed (keras-hub needs it, TensorBoard writes with it) but
    # transformers must not load its TF side: Keras 3 is not tf-keras.
    env.update(
        USE_TF="0", USE_TORCH="0", HF_HUB_DISABLE_TELEMETRY="1", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu"
    )
    cmd = example_command(args, work, out_dir, epochs)
    curve = Curve(args.out, t0, args.target, args.max_steps, args.max_train_s)
    curve.header(
        "hf-flax",
        args,
        vocab,
        {
            "versions": versions(
                ["jax", "jaxlib", "flax", "optax", "transformers", "datasets", "tokenizers"]
            ),
            "example_command": " ".join(cmd[3:]),
            "cpus": cpus,
            "eval_sequences": n_eval,
            "lr_decay_steps": epochs * per_epoch,
            "notes": "step = optimizer updates done (the example's cur_step + 1); "
            "eval masks redrawn each evaluation by the example's collator",
        },
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    watcher = OutputWatcher(proc.stdout, work / "run_mlm_flax.log")
    watcher.start()
    events = EvalEvents(out_dir)
    done = False
    try:
        while not done:
            exited = proc.poll() is not None
            for wall, step, acc in events.poll():
                # Evaluations written after the stop condition (the example runs on
                # until it is ended, up to a second later) are not part of the race.
                done = curve.point(wall, watcher.train_t0 or wall, step + 1, acc)
                if done:
                    break
            if exited:
                break
            time.sleep(1.0)
    finally:
        stop_group(proc)
        watcher.join(timeout=10)
    if watcher.train_t0 is None:
        raise PeerError(f"run_mlm_flax.py never started training: see {work / 'run_mlm_flax.log'}")
    curve.finish(watcher.train_t0 - t0, {"last_step": curve.last_step, "returncode": proc.returncode})


if __name__ == "__main__":
    run_main(main)
