"""The same command on the same inputs gives the same bytes: every vocabulary
kind, built in two processes (another PYTHONHASHSEED, another thread count,
another output folder), and the demo pre-training run from scratch in two
workdirs (vocab, shards, metadata and per-step losses). See docs/design.md,
"Determinism"."""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import sys

import pytest

from bert_jax.data import corpus, vocab
from bert_jax.train import metrics_log

# The built-in corpus's start: ~40 modules of stdlib docstrings, read in a second.
SAMPLE_CHARS = 150_000

# Runs the CLI with os.cpu_count() pinned to argv[1]: a machine with that many cores.
_CLI_WITH_CORES = (
    "import os, sys; cores = int(sys.argv.pop(1)); os.cpu_count = lambda: cores; "
    "from bert_jax.cli import run; run(['bert-jax', *sys.argv[1:]])"
)

# (build-vocab flags, files written under OUTPUT) per vocabulary kind.
KINDS = {
    "wordpiece": (["--model=wordpiece", "--vocab_size=1500"], [""]),
    "sentencepiece-unigram": (
        ["--model=sentencepiece", "--sp_model_type=unigram", "--vocab_size=1500"],
        [".model", ".vocab"],
    ),
    "sentencepiece-bpe": (
        ["--model=sentencepiece", "--sp_model_type=bpe", "--vocab_size=1500"],
        [".model", ".vocab"],
    ),
    "bytebpe": (["--model=bytebpe", "--vocab_size=1500"], ["/vocab.json", "/merges.txt"]),
}


def _environment(hash_seed: int, threads: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), RAYON_NUM_THREADS=str(threads))
    env.pop("TOKENIZERS_PARALLELISM", None)
    return env


def _build_vocab(
    output: pathlib.Path,
    flags: list[str],
    hash_seed: int,
    threads: int,
    source: str = corpus.BUILTIN_STDLIB_DOCS,
) -> None:
    """`bert-jax build-vocab` in a process of its own, with `threads` cores and tokenizers threads."""
    command = [
        sys.executable,
        "-c",
        _CLI_WITH_CORES,
        str(threads),
        "build-vocab",
        f"--input={source}",
        f"--max_chars={SAMPLE_CHARS}",
        f"--output={output}",
        *flags,
    ]
    done = subprocess.run(
        command, env=_environment(hash_seed, threads), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_build_vocab_gives_the_same_bytes_in_another_process_folder_and_thread_count(tmp_path, kind):
    flags, suffixes = KINDS[kind]
    first, second = tmp_path / "a" / "out", tmp_path / "b" / "c" / "out"
    _build_vocab(first, flags, hash_seed=1, threads=1)
    _build_vocab(second, flags, hash_seed=2, threads=4)
    for suffix in suffixes:
        ours, theirs = pathlib.Path(f"{first}{suffix}"), pathlib.Path(f"{second}{suffix}")
        assert ours.read_bytes() == theirs.read_bytes(), f"{kind}: {ours.name} differs between the two runs"


def test_wordpiece_over_the_alphabet_limit_gives_the_same_bytes_in_another_process(tmp_path):
    """1700 characters, most of them seen once or twice: which 1000 make the alphabet is decided by ties."""
    rng = random.Random(0)
    letters = [chr(c) for c in range(0x0430, 0x0430 + 32)]  # Cyrillic lower case: the words
    rare = [chr(c) for c in range(0x4E00, 0x4E00 + 1700)]  # CJK: one-character words
    lines = []
    for _ in range(2000):
        words = ["".join(rng.choices(letters, k=rng.randint(1, 6))) for _ in range(8)]
        lines.append(" ".join([*words, rng.choice(rare)]) + ".")
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    _build_vocab(first, ["--vocab_size=1500"], hash_seed=1, threads=1, source=str(text))
    _build_vocab(second, ["--vocab_size=1500"], hash_seed=2, threads=4, source=str(text))
    tokens = first.read_text(encoding="utf-8").split("\n")
    assert sum(len(t) == 1 for t in tokens) == vocab.WORDPIECE_LIMIT_ALPHABET
    assert first.read_bytes() == second.read_bytes()


def test_wordpiece_base_pieces_are_sorted_after_the_special_tokens(tmp_path):
    """Alphabet then "##" pieces, each in code point order, whatever order the words came in."""
    text = tmp_path / "corpus.txt"
    text.write_text("zebra yak xerus.\nwombat vole!\nzebra yak.\n" * 40, encoding="utf-8")
    vocab.build_wordpiece_vocab(str(text), 120, True, str(tmp_path / "vocab.txt"))
    tokens = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    alphabet = sorted(set("zebrayakxeruswombatvole.!"))
    continuations = sorted(
        {"##" + c for word in ("zebra", "yak", "xerus", "wombat", "vole") for c in word[1:]}
    )
    start = len(vocab.SPECIAL_TOKENS)
    assert tokens[start : start + len(alphabet)] == alphabet
    assert tokens[start + len(alphabet) : start + len(alphabet) + len(continuations)] == continuations


def test_wordpiece_alphabet_limit_keeps_the_most_frequent_and_breaks_ties_by_code_point():
    """d (3) is kept; a, b, c tie at 2 and the limit of 3 keeps a and b; e (1) goes.
    "##c" is not made: c is not in the alphabet."""
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=True)
    alphabet, continuations = vocab.wordpiece_base_pieces(trainer, ["ddd cab", "CB e a"], limit_alphabet=3)
    assert alphabet == ["a", "b", "d"]
    assert continuations == ["##a", "##b", "##d"]


def test_sentencepiece_model_does_not_record_the_output_path(tmp_path):
    """The trainer writes its model_prefix into the model; ours goes through a stream, so it holds none."""
    text = tmp_path / "corpus.txt"
    text.write_text("Kalo mi ne ru sa to vi ze po.\nQu fa kalo mine rusa tovi.\n" * 200, encoding="utf-8")
    prefix = tmp_path / "a-distinctive-folder-name" / "spiece"
    path = vocab.build_sentencepiece_model(str(text), 60, "bpe", str(prefix))
    assert b"a-distinctive-folder-name" not in pathlib.Path(path).read_bytes()
    assert (
        pathlib.Path(str(prefix) + ".vocab")
        .read_text(encoding="utf-8")
        .startswith("<pad>\t0\n<unk>\t0\n[CLS]\t0\n")
    )


# ---------------------------------------------------------------------------
# The demo, twice from scratch


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory) -> str:
    """The demo's text at a tenth of the cost: the start (3000 characters) of
    the built-in corpus's first 80 documents, one file each."""
    folder = tmp_path_factory.mktemp("demo-corpus")
    documents = corpus.iter_documents(corpus.BUILTIN_STDLIB_DOCS)
    for index, doc in zip(range(80), documents, strict=False):
        text, chars = [], 0
        for sentence in doc.sentences:
            text.append(sentence)
            chars += len(sentence)
            if chars > 3000:
                break
        (folder / f"{index:03d}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    return str(folder / "*.txt")


def _demo_run(workdir: pathlib.Path, corpus_file: str, hash_seed: int, repo_root: pathlib.Path) -> None:
    """`bert-jax pretrain --config=configs/demo.py` for 3 steps of a small model, from nothing."""
    command = [
        sys.executable,
        "-m",
        "bert_jax.cli",
        "pretrain",
        "--config=configs/demo.py",
        f"--workdir={workdir}",
        f"--config.data.corpus={corpus_file}",
        "--config.data.vocab_size=1000",
        "--config.data.max_seq_length=32",
        "--config.model.max_position_embeddings=32",
        "--config.model.num_layers=1",
        "--config.model.hidden_size=32",
        "--config.model.num_heads=4",
        "--config.model.intermediate_size=64",
        "--config.batch_size=16",
        "--config.total_steps=3",
        "--config.log_every_steps=1",
        "--config.eval_every_steps=0",
        "--config.eval_steps=1",
        "--config.checkpoint_every_steps=0",
    ]
    done = subprocess.run(
        command, cwd=repo_root, env=_environment(hash_seed, 2), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def two_demo_runs(tmp_path_factory, demo_corpus, repo_root) -> tuple[pathlib.Path, pathlib.Path]:
    root = tmp_path_factory.mktemp("demo-twice")
    first, second = root / "first", root / "second"
    _demo_run(first, demo_corpus, 1, repo_root)
    _demo_run(second, demo_corpus, 2, repo_root)
    return first, second


@pytest.mark.slow
def test_demo_twice_gives_the_same_per_step_losses(two_demo_runs):
    first, second = (metrics_log.read_metrics(str(w)) for w in two_demo_runs)
    assert sorted(first) == [1, 2, 3]
    for key in ("loss", "mlm_loss", "nsp_loss", "grad_norm"):
        assert [first[s][key] for s in (1, 2, 3)] == [second[s][key] for s in (1, 2, 3)], key


@pytest.mark.slow
def test_demo_twice_gives_the_same_vocab_and_shards(two_demo_runs):
    first, second = two_demo_runs
    assert (first / "vocab.txt").read_bytes() == (second / "vocab.txt").read_bytes()
    data = first / "data" / "seq32_p10"
    shards = sorted(p.relative_to(first) for p in data.glob("*.tfrecord"))
    assert len(shards) == 10
    for shard in shards:
        assert (first / shard).read_bytes() == (second / shard).read_bytes(), shard


@pytest.mark.slow
def test_demo_twice_gives_the_same_metadata_but_for_the_vocab_path(two_demo_runs):
    """metadata.json names the vocab file by its absolute path: the one field that follows the workdir."""
    first, second = (
        json.loads((w / "data" / "seq32_p10" / "metadata.json").read_text()) for w in two_demo_runs
    )
    assert first["vocab"].pop("file") != second["vocab"].pop("file")
    assert first == second
