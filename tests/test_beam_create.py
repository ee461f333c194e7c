"""create-data on Apache Beam: the same records, shards and metadata as the local path; bad input.

The equality tests run the local path and the Beam pipeline (DirectRunner, in
process) on one small corpus of several files, blocks spanning files, an empty
file, a one-sentence document and a non-UTF-8 line, and compare metadata.json
exactly and every shard's records as a sorted list.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

from bert_jax.data import corpus, create_data, records
from bert_jax.errors import DataError, UserError

WORDS = [f"w{i}" for i in range(30)]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]
SETTINGS = dict(max_seq_length=32, dupe_factor=2, input_format="sentences", block_size=3, num_shards=2)


@pytest.fixture(scope="session")
def beam_create():
    pytest.importorskip("apache_beam", reason="apache_beam is not installed (pip install -e .[beam])")
    from bert_jax.data import beam_create

    return beam_create


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """(vocab file, corpus glob): 3 files of 4 documents of 5 sentences, plus an empty file."""
    root = tmp_path_factory.mktemp("beam")
    (root / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    rng = np.random.default_rng(0)
    (root / "corpus").mkdir()
    for f in range(3):
        lines = []
        for d in range(4):
            count = 1 if (f, d) == (1, 2) else 5  # one one-sentence document
            lines += [" ".join(rng.choice(WORDS, rng.integers(3, 12))) + " ." for _ in range(count)] + [""]
        (root / "corpus" / f"f{f}.txt").write_bytes("\n".join(lines).encode("utf-8") + (b"w1 \xff .\n" if f == 2 else b""))
    (root / "corpus" / "empty.txt").write_bytes(b"")
    return str(root / "vocab.txt"), str(root / "corpus" / "*.txt")


def _shard_records(summary: dict, directory) -> list[list[bytes]]:
    metadata = records.read_metadata(str(directory))
    return [sorted(records.iter_records(path)) for path in metadata["shard_paths"]]


def _both(beam_create, tmp_path, small_corpus, **overrides):
    vocab, spec = small_corpus
    options = dict(SETTINGS, vocab_file=vocab, **overrides)
    local = create_data.create_pretraining_data(create_data.CreateDataOptions(**options), spec, str(tmp_path / "local"))
    beam = beam_create.create_pretraining_data_beam(
        create_data.CreateDataOptions(**options), spec, str(tmp_path / "beam"), "--runner=DirectRunner"
    )
    return (local, _shard_records(local, tmp_path / "local")), (beam, _shard_records(beam, tmp_path / "beam"))


def _without_timing(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("elapsed_s", "instances_per_s")}


@pytest.mark.parametrize(
    "overrides",
    [dict(mode="nsp"), dict(mode="mlm_packed", masking="none")],
    ids=["nsp-static", "mlm_packed-unmasked"],
)
def test_beam_writes_the_same_shards_and_metadata_as_the_local_path(beam_create, tmp_path, small_corpus, overrides):
    (local, local_shards), (beam, beam_shards) = _both(beam_create, tmp_path, small_corpus, **overrides)
    assert _without_timing(beam) == _without_timing(local)
    assert beam_shards == local_shards  # every shard: the same records (Beam may order them otherwise)
    assert sum(map(len, local_shards)) == local["counts"]["instances"] > 0
    assert (tmp_path / "beam" / "metadata.json").read_bytes() == (tmp_path / "local" / "metadata.json").read_bytes()
    skipped = local["counts"]["skipped"]
    assert skipped["empty_files"] == 1 and skipped["non_utf8_lines"] == 1
    assert sorted(p.name for p in (tmp_path / "beam").iterdir()) == [
        "metadata.json",
        "part-00000-of-00002.tfrecord",
        "part-00001-of-00002.tfrecord",
    ]  # no temporary file left behind


def test_block_layout_cuts_blocks_as_the_local_reader(beam_create, small_corpus):
    _, spec = small_corpus
    docs = list(corpus.iter_raw_documents(spec, "sentences"))
    local = [len(b) for b in create_data.iter_blocks(docs, 3, 10**9)]
    by_unit = [(0, [create_data.document_chars(d) for d in docs[:5]]), (1, [create_data.document_chars(d) for d in docs[5:]])]
    offsets, starts = beam_create.block_layout(list(reversed(by_unit)), 3, 10**9)
    assert offsets == {0: 0, 1: 5}
    assert np.diff(np.append(starts, len(docs))).tolist() == local
    assert beam_create.assign_block(((1, 0), "doc"), (offsets, starts)) == (1, (5, "doc"))  # ordinal 5: block 1


def test_beam_units_key_documents_as_the_local_reader(beam_create, small_corpus):
    _, spec = small_corpus
    units = beam_create.input_units(spec)
    assert [u.key for u in units] == ["empty.txt", "f0.txt", "f1.txt", "f2.txt"]
    keys = [d.key for u in units for d in beam_create.unit_documents(u, "sentences", corpus.CorpusStats(), None)]
    assert keys == [d.key for d in corpus.iter_raw_documents(spec, "sentences")]


def test_remote_outputs_and_globs_keep_their_scheme(beam_create, monkeypatch):
    from apache_beam.io.filesystem import FileMetadata, MatchResult

    assert beam_create.output_paths("gs://b/data", 2) == [
        "gs://b/data/part-00000-of-00002.tfrecord",
        "gs://b/data/part-00001-of-00002.tfrecord",
    ]
    assert beam_create.output_paths("gs://b/data/train@2", 1)[1] == "gs://b/data/train-00001-of-00002"
    listing = ["gs://b/books/z/b.txt", "gs://b/books/a.txt"]
    monkeypatch.setattr(
        beam_create.FileSystems,
        "match",
        lambda patterns: [MatchResult(patterns[0], [FileMetadata(p, 10) for p in listing])],
    )
    units = beam_create.input_units("gs://b/books/**")
    assert [(u.source, u.key, u.kind) for u in units] == [
        ("gs://b/books/a.txt", "a.txt", "remote"),
        ("gs://b/books/z/b.txt", "z/b.txt", "remote"),
    ]


def test_a_remote_glob_matching_nothing_is_one_line(beam_create, monkeypatch, tmp_path, small_corpus):
    from apache_beam.io.filesystem import MatchResult

    monkeypatch.setattr(beam_create.FileSystems, "match", lambda patterns: [MatchResult(patterns[0], [])])
    options = create_data.CreateDataOptions(vocab_file=small_corpus[0])
    with pytest.raises(DataError, match=r"^input 'gs://bucket/books/\*\.txt' matches no file") as error:
        beam_create.create_pretraining_data_beam(options, "gs://bucket/books/*.txt", str(tmp_path / "out"), [])
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_local_glob_matching_nothing_is_one_line(beam_create, tmp_path, small_corpus):
    options = create_data.CreateDataOptions(vocab_file=small_corpus[0])
    with pytest.raises(DataError, match="matches no file") as error:
        beam_create.create_pretraining_data_beam(options, str(tmp_path / "none*.txt"), str(tmp_path / "out"), [])
    assert "\n" not in str(error.value)


def test_without_apache_beam_the_beam_path_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # what a missing package does to `import`
    monkeypatch.delitem(sys.modules, "bert_jax.data.beam_create", raising=False)
    with pytest.raises(UserError, match=r"pip install -e \.\[beam\]") as error:
        importlib.import_module("bert_jax.data.beam_create")
    assert "\n" not in str(error.value)


def test_cli_runner_beam_without_apache_beam_exits_2_and_the_local_path_never_imports_it(tmp_path, repo_root):
    argv = ["bert-jax", "create-data", "--runner=beam", f"--input_file={tmp_path}/*.txt",
            f"--output_file={tmp_path / 'out'}", f"--vocab_file={tmp_path / 'vocab.txt'}"]
    code = (
        "import sys\nimport bert_jax.commands.create_data\n"
        "assert 'apache_beam' not in sys.modules, 'the local path imported apache_beam'\n"
        f"sys.modules['apache_beam'] = None\nsys.argv = {argv!r}\nfrom bert_jax import cli\ncli.run()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("bert-jax create-data: error:")]
    assert len(errors) == 1 and "pip install -e .[beam]" in errors[0], result.stderr[-2000:]
    assert result.stderr.rstrip().endswith(errors[0])  # the last word: no traceback after it


def test_a_failing_block_leaves_no_shard_and_no_metadata(beam_create, tmp_path, small_corpus, monkeypatch):
    vocab, spec = small_corpus
    make = create_data.BlockProcessor.__call__

    def fail_on_the_second_file(self, block):
        if any(raw.key.startswith("f1.txt") for raw in block):
            raise RuntimeError("worker lost")
        return make(self, block)

    monkeypatch.setattr(create_data.BlockProcessor, "__call__", fail_on_the_second_file)
    options = create_data.CreateDataOptions(vocab_file=vocab, **SETTINGS)
    with pytest.raises(Exception, match="worker lost"):
        beam_create.create_pretraining_data_beam(options, spec, str(tmp_path / "out"), "--runner=DirectRunner")
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not [name for name in left if name.startswith("part-") or name == "metadata.json"], left
