"""The tf.data pre-training pipeline: batches, masking, splitting across processes, resume, bad input
(the process-count independence of the batch sequence: tests/test_elastic_data.py).

Tiny shards (3 files x 40 records, seq 16, max_predictions 3) written here;
record (f, r) of file f has example id f << 32 | r and content drawn from a
generator seeded with (f, r), so every expectation is recomputed from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from bert_jax.data import records
from bert_jax.data.dynamic_masking import DynamicMasker, MaskingOptions
from bert_jax.data.input_pipeline import ID_SHIFT, PretrainingPipeline, resume_plan
from bert_jax.errors import ConfigError, DataError

SEQ, PRED, FILES, PER_FILE, BATCH = 16, 3, 3, 40, 4
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(5, 60)]
TOKENS += [f"##c{i}" for i in range(60, 100)]
PAD, CLS, SEP, MASK = 0, 2, 3, 4
WORDS, PIECES = np.arange(5, 60), np.arange(60, 100)
SPECIAL = {0, 1, 2, 3, 4}


def record_content(f: int, r: int) -> dict:
    """[CLS] a [SEP] b [SEP] [PAD]..., words of 1-3 pieces; masks of the static variant."""
    rng = np.random.default_rng([f, r])
    length = int(rng.integers(8, SEQ + 1))
    pieces = []
    while len(pieces) < length - 3:
        pieces += [int(rng.choice(WORDS))] + [int(p) for p in rng.choice(PIECES, int(rng.integers(0, 3)))]
    pieces = pieces[: length - 3]
    cut = len(pieces) // 2
    ids = [CLS] + pieces[:cut] + [SEP] + pieces[cut:] + [SEP]
    segments = [0] * (cut + 2) + [1] * (len(ids) - cut - 2)
    pad = SEQ - len(ids)
    positions = sorted(rng.choice(np.arange(1, len(ids) - 1), 2, replace=False).tolist())
    return {
        "input_ids": ids + [PAD] * pad,
        "input_mask": [1] * len(ids) + [0] * pad,
        "segment_ids": segments + [0] * pad,
        "masked_lm_positions": positions + [0],
        "masked_lm_ids": [ids[p] for p in positions] + [0],
        "masked_lm_weights": [1.0, 1.0, 0.0],
        "next_sentence_labels": int(rng.integers(2)),
    }


def write_dataset(
    directory, masking: str, *, metadata: bool = True, files: int = FILES, per_file: int = PER_FILE
):
    os.makedirs(directory, exist_ok=True)
    encoder = records.ExampleEncoder(masking)
    shards = []
    for f in range(files):
        name = f"part-{f:03d}.tfrecord"
        with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
            for r in range(per_file):
                c = record_content(f, r)
                ints = [c[k] for k in records.INT_FEATURES]
                if masking != "none":
                    ints += [c["masked_lm_positions"], c["masked_lm_ids"]]
                weights = c["masked_lm_weights"] if masking != "none" else None
                writer.write(encoder.encode(ints, weights, c["next_sentence_labels"]))
        shards.append({"file": name, "instances": per_file})
    if metadata:
        records.write_metadata(
            str(directory),
            {
                "format": records.FORMAT,
                "vocab": {
                    "file": "vocab.txt",
                    "sha256": "abc123",
                    "size": len(TOKENS),
                    "do_lower_case": True,
                },
                "settings": {"max_seq_length": SEQ, "max_predictions_per_seq": PRED, "masking": masking},
                "features": records.feature_lengths(SEQ, PRED, masking),
                "counts": {"instances": files * per_file},
                "shards": shards,
            },
        )
    return str(directory)


def options(whole_word: bool = False, prob: float = 0.15, max_predictions: int = PRED) -> MaskingOptions:
    return MaskingOptions.from_tokens(
        TOKENS, masked_lm_prob=prob, max_predictions_per_seq=max_predictions, whole_word_mask=whole_word
    )


@pytest.fixture(scope="session")
def static_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("static"), "static")


@pytest.fixture(scope="session")
def unmasked_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("unmasked"), "none")


def take(pipeline, n: int) -> list[dict]:
    return [next(pipeline) for _ in range(n)]


def static(files, **kwargs) -> PretrainingPipeline:
    return PretrainingPipeline(files, kwargs.pop("batch_size", BATCH), shuffle_buffer=16, **kwargs)


def dynamic(files, whole_word: bool = False, **kwargs) -> PretrainingPipeline:
    return PretrainingPipeline(
        files,
        kwargs.pop("batch_size", BATCH),
        masking="dynamic",
        dynamic=options(whole_word),
        shuffle_buffer=16,
        **kwargs,
    )


def split_id(example_id) -> tuple[int, int]:
    return int(example_id) >> ID_SHIFT, int(example_id) & ((1 << ID_SHIFT) - 1)


def by_example(batches: list[dict]) -> dict[int, dict]:
    """{example_id: {key: row}} over batches."""
    out = {}
    for batch in batches:
        for i, example_id in enumerate(batch["example_id"]):
            out[int(example_id)] = {k: v[i] for k, v in batch.items()}
    return out


def assert_batches_equal(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# -- batches -------------------------------------------------------------------------------------


def test_static_batch_keys_dtypes_and_shapes(static_dir):
    batch = next(static(static_dir))
    expected = {
        "input_ids": ((BATCH, SEQ), np.int32),
        "input_mask": ((BATCH, SEQ), np.int32),
        "segment_ids": ((BATCH, SEQ), np.int32),
        "masked_lm_positions": ((BATCH, PRED), np.int32),
        "masked_lm_ids": ((BATCH, PRED), np.int32),
        "masked_lm_weights": ((BATCH, PRED), np.float32),
        "next_sentence_labels": ((BATCH,), np.int32),
    }
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected


def test_dynamic_batch_keys_dtypes_and_shapes(unmasked_dir):
    batch = next(dynamic(unmasked_dir, with_example_ids=True))
    shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
    assert shapes["masked_lm_positions"] == ((BATCH, PRED), np.int32)
    assert shapes["masked_lm_weights"] == ((BATCH, PRED), np.float32)
    assert shapes["input_ids"] == ((BATCH, SEQ), np.int32)
    assert shapes["next_sentence_labels"] == ((BATCH,), np.int32)
    assert shapes["example_id"] == ((BATCH,), np.int64)


def test_static_mode_returns_the_stored_records_exactly(static_dir):
    pipeline = static(static_dir, with_example_ids=True)
    seen = by_example(take(pipeline, pipeline.batches_per_epoch))
    assert len(seen) == FILES * PER_FILE
    for example_id, row in seen.items():
        stored = record_content(*split_id(example_id))
        for key, value in stored.items():
            np.testing.assert_array_equal(row[key], value, err_msg=f"{key} of {split_id(example_id)}")


def test_reads_original_format_shards_without_metadata(tmp_path):
    directory = write_dataset(tmp_path, "static", metadata=False, files=1)
    pipeline = static(os.path.join(directory, "part-*"), with_example_ids=True, max_seq_length=SEQ)
    seen = by_example(take(pipeline, pipeline.batches_per_epoch))
    assert sorted(seen) == list(range(PER_FILE))
    np.testing.assert_array_equal(seen[7]["masked_lm_ids"], record_content(0, 7)["masked_lm_ids"])


# -- dynamic masking -----------------------------------------------------------------------------


def assert_consistent_masks(row: dict, original: dict, masker: DynamicMasker):
    """Masks of one example agree with its unmasked record and the masking rules."""
    ids = np.array(original["input_ids"])
    real = int(np.sum(original["input_mask"]))
    maskable = real - int(np.sum(np.isin(ids[:real], [CLS, SEP])))
    budget = min(PRED, max(1, round(maskable * masker.options.masked_lm_prob)))
    weights = row["masked_lm_weights"]
    positions = row["masked_lm_positions"][weights > 0]
    assert len(positions) == budget  # word-piece masking fills the budget exactly
    assert list(positions) == sorted(positions)
    assert not np.isin(ids[positions], [CLS, SEP, PAD]).any()
    np.testing.assert_array_equal(row["masked_lm_ids"][weights > 0], ids[positions])
    np.testing.assert_array_equal(row["masked_lm_positions"][weights == 0], 0)
    untouched = np.setdiff1d(np.arange(SEQ), positions)
    np.testing.assert_array_equal(row["input_ids"][untouched], ids[untouched])


def test_dynamic_masks_respect_the_rules_for_every_example(unmasked_dir):
    pipeline = dynamic(unmasked_dir, with_example_ids=True)
    masker = DynamicMasker(options())
    seen = by_example(take(pipeline, pipeline.batches_per_epoch))
    assert len(seen) == FILES * PER_FILE
    for example_id, row in seen.items():
        assert_consistent_masks(row, record_content(*split_id(example_id)), masker)


def random_batch(rows: int, seed: int, continuation_rate: float = 0.0):
    """Synthetic [rows, 64] ids: [CLS] tokens [SEP] [PAD]... with lengths 20..64."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, 64), np.int32)
    mask = np.zeros((rows, 64), np.int32)
    for i, length in enumerate(rng.integers(20, 65, rows)):
        body = np.where(
            rng.random(length - 2) < continuation_rate,
            rng.choice(PIECES, length - 2),
            rng.choice(WORDS, length - 2),
        )
        ids[i, :length] = [CLS, *body, SEP]
        mask[i, :length] = 1
    uniforms = tf.random.stateless_uniform([rows, 3, 64], [seed, 1])
    return ids, mask, uniforms


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_dynamic_masking_statistics_80_10_10_and_budget():
    masker = DynamicMasker(options(max_predictions=20))
    ids, mask, uniforms = random_batch(2000, seed=3)
    out = {k: v.numpy() for k, v in masker(tf.constant(ids), tf.constant(mask), uniforms).items()}
    real = mask.sum(1) - 2  # [CLS] and [SEP] are never masked
    budget = np.minimum(20, np.maximum(1, np.round(real * 0.15)))
    np.testing.assert_array_equal(out["masked_lm_weights"].sum(1), budget)
    chosen = out["masked_lm_weights"] > 0
    rows = np.nonzero(chosen)[0]
    positions = out["masked_lm_positions"][chosen]
    now, before = out["input_ids"][rows, positions], ids[rows, positions]
    n = len(positions)
    as_mask, kept = np.sum(now == MASK), np.sum(now == before)
    replaced = now[(now != MASK) & (now != before)]
    low, high = binomial_bounds(n, 0.8)
    assert low <= as_mask <= high
    # A random replacement equals the original with probability 1/95: kept is slightly above 10%.
    low, high = binomial_bounds(n, 0.1 + 0.1 / 95)
    assert low <= kept <= high
    low, high = binomial_bounds(n, 0.1 * 94 / 95)
    assert low <= len(replaced) <= high
    assert not np.isin(replaced, list(SPECIAL)).any()
    assert len(np.unique(replaced)) > 50  # drawn from the whole non-special vocab


def test_dynamic_masking_never_masks_cls_sep_or_padding():
    masker = DynamicMasker(options(prob=1.0, max_predictions=64))
    ids, mask, uniforms = random_batch(200, seed=4)
    chosen = masker.choose(tf.constant(ids), tf.constant(mask), uniforms[:, 0]).numpy()
    np.testing.assert_array_equal(chosen, (mask == 1) & (ids != CLS) & (ids != SEP))


def word_spans(ids: np.ndarray, mask: np.ndarray) -> list[range]:
    """Whole words of a row: a word piece and the "##" pieces right after it."""
    spans, start = [], None
    for i in range(int(mask.sum())):
        if ids[i] in PIECES and start is not None:
            continue
        if start is not None:
            spans.append(range(start, i))
        start = i if ids[i] not in (CLS, SEP) else None
    return spans


def test_whole_word_masking_masks_whole_words():
    masker = DynamicMasker(options(whole_word=True, max_predictions=20))
    ids, mask, uniforms = random_batch(300, seed=5, continuation_rate=0.5)
    chosen = masker.choose(tf.constant(ids), tf.constant(mask), uniforms[:, 0]).numpy()
    budget = masker.budget(tf.constant((mask == 1) & (ids != CLS) & (ids != SEP))).numpy()
    multi = 0
    for row in range(len(ids)):
        for span in word_spans(ids[row], mask[row]):
            assert len(set(chosen[row, list(span)])) == 1, (row, span)
            multi += len(span) > 1 and chosen[row, span.start]
        assert 1 <= chosen[row].sum() <= budget[row]
    assert multi > 100  # multi-piece words were masked, not only single pieces
    assert chosen.sum() >= 0.95 * budget.sum()  # a word that overflows is skipped, later ones fill up


def test_dynamic_masks_depend_only_on_seed_example_and_epoch(unmasked_dir):
    one = dynamic(unmasked_dir, with_example_ids=True, seed=7)
    epoch0, epoch1 = (
        by_example(take(one, one.batches_per_epoch)),
        by_example(take(one, one.batches_per_epoch)),
    )
    halves = [
        dynamic(unmasked_dir, with_example_ids=True, seed=7, process_index=p, process_count=2)
        for p in range(2)
    ]
    rescaled = {}
    for half in halves:
        rescaled.update(by_example(take(half, half.batches_per_epoch)))
    assert sorted(rescaled) == sorted(epoch0)
    for example_id in epoch0:
        for key in ("input_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
            np.testing.assert_array_equal(rescaled[example_id][key], epoch0[example_id][key])
    differ = sum(not np.array_equal(epoch0[i]["input_ids"], epoch1[i]["input_ids"]) for i in epoch0)
    assert differ > 0.8 * len(epoch0)


# -- splitting, determinism, resume ---------------------------------------------------------------


@pytest.mark.parametrize(
    "files,streams", [("part-*", 2), ("part-001.tfrecord", None)], ids=["by-file", "by-record"]
)
def test_two_processes_see_each_example_once_per_epoch(static_dir, files, streams):
    ids = []
    for p in range(2):
        pipeline = static(
            os.path.join(static_dir, files),
            with_example_ids=True,
            process_index=p,
            process_count=2,
            streams=streams,  # 2 streams of whole files; automatic: 8 streams sharing the one file
        )
        ids += [i for b in take(pipeline, pipeline.batches_per_epoch) for i in b["example_id"].tolist()]
    total = PER_FILE * (FILES if files == "part-*" else 1)
    assert len(ids) == total
    assert len(set(ids)) == total


def test_each_epoch_holds_every_example_once_in_a_new_order(static_dir):
    pipeline = static(static_dir, with_example_ids=True)
    epochs = [
        np.concatenate([b["example_id"] for b in take(pipeline, pipeline.batches_per_epoch)])
        for _ in range(2)
    ]
    assert sorted(epochs[0]) == sorted(epochs[1])
    assert len(set(epochs[0])) == FILES * PER_FILE
    assert list(epochs[0]) != list(epochs[1])


def test_same_seed_same_batches_other_seed_other_order(unmasked_dir):
    a, b = take(dynamic(unmasked_dir, seed=1), 12), take(dynamic(unmasked_dir, seed=1), 12)
    assert_batches_equal(a, b)
    c = take(dynamic(unmasked_dir, seed=2), 12)
    assert not all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("make", [static, dynamic], ids=["static", "dynamic"])
def test_resume_at_step_k_continues_exactly(static_dir, unmasked_dir, make):
    files = static_dir if make is static else unmasked_dir
    running = make(files, with_example_ids=True, seed=3)
    k = running.batches_per_epoch + running.batches_per_epoch - 3  # 3 batches before an epoch ends
    take(running, k)
    state = json.loads(json.dumps(running.state()))
    assert state["batches"] == k
    resumed = make(files, with_example_ids=True, seed=3, state=state)
    assert_batches_equal(take(resumed, 6), take(running, 6))


def test_resume_per_process_from_the_shared_global_step(static_dir):
    state = None
    for p in range(2):
        # Stream 0 (process 0) reads files 0 and 2, stream 1 (process 1) file 1.
        running = static(static_dir, with_example_ids=True, process_index=p, process_count=2, streams=2)
        take(running, 13)  # past process 1's first epoch (10 batches), inside process 0's (20)
        state = running.state() if p == 0 else state  # only process 0's state is saved
        resumed = static(
            static_dir, with_example_ids=True, process_index=p, process_count=2, streams=2, state=state
        )
        assert_batches_equal(take(resumed, 4), take(running, 4))


@pytest.mark.parametrize("cycle_length", [2, 3])
def test_resume_plan_matches_tf_data_interleave(cycle_length):
    """The plan's fresh interleave yields exactly the tail of the full one: chunk edges, a short
    last chunk, a 1-record and an empty file, a file used up but not yet found so, the very end."""
    counts = [150, 130, 64, 1, 0, 200, 65]
    chunk = 64

    def records(file_ids, first_chunks):
        files = tf.data.Dataset.from_tensor_slices((tf.constant(file_ids, tf.int64), tf.constant(first_chunks, tf.int64)))

        def read(f, first):
            count = tf.gather(tf.constant(counts, tf.int64), f)
            start = tf.maximum(first, 0) * chunk
            taken = tf.data.Dataset.range(count).skip(start).take(tf.where(first < 0, tf.constant(0, tf.int64), -1))
            return taken.map(lambda r: f * 1000 + r).batch(chunk)

        interleaved = files.interleave(read, cycle_length=cycle_length, num_parallel_calls=2, deterministic=True)
        return [int(x) for x in interleaved.unbatch().as_numpy_iterator()]

    full = records(list(range(len(counts))), [0] * len(counts))
    assert len(full) == sum(counts)
    for skip in (0, 1, 63, 64, 65, 128, 150, 151, 257, 345, 346, 400, 500, 609, 610):
        inputs, drop = resume_plan(counts, cycle_length, chunk, skip)
        tail = records([f for f, _ in inputs], [c for _, c in inputs])
        assert tail[drop:] == full[skip:], skip


@pytest.fixture(scope="session")
def many_chunks_dir(tmp_path_factory):
    """6 files of 150 records (3 read chunks each), for resumes deep into an epoch."""
    return write_dataset(tmp_path_factory.mktemp("many"), "static", files=6, per_file=150)


def test_resume_deep_in_an_epoch_does_not_read_used_up_shards(many_chunks_dir, tmp_path):
    """Shards whose records all came before the resume point are garbage here: the resumed run must not open them."""

    def pipeline(files, **kwargs):
        return PretrainingPipeline(
            files, BATCH, streams=1, shuffle_buffer=16, cycle_length=2, with_example_ids=True, seed=5, **kwargs
        )

    running = pipeline(many_chunks_dir)
    k = 132  # 528 records: whole shuffle windows
    seen = [split_id(i) for batch in take(running, k) for i in batch["example_id"]]
    state = running.state()
    used_up = [f for f in range(6) if sum(1 for file, _ in seen if file == f) == 150]
    assert len(used_up) >= 2  # two interleaved at a time: at least the first pair is done
    directory = copy_dataset(many_chunks_dir, tmp_path / "d")
    for f in used_up:
        write_bytes(os.path.join(directory, f"part-{f:03d}.tfrecord"), b"not a tfrecord")
    resumed = pipeline(directory, state=state)
    assert_batches_equal(take(resumed, 40), take(running, 40))


def test_finite_epochs_stop(static_dir):
    pipeline = static(static_dir, num_epochs=2)
    assert len(list(pipeline)) == 2 * pipeline.batches_per_epoch


# -- bad input -----------------------------------------------------------------------------------


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def copy_dataset(source: str, target) -> str:
    shutil.copytree(source, target)
    return str(target)


def test_corrupt_record_names_the_file_and_record(static_dir, tmp_path):
    directory = copy_dataset(static_dir, tmp_path / "d")
    path = os.path.join(directory, "part-001.tfrecord")
    data = bytearray(read_bytes(path))
    record_size = len(data) // PER_FILE  # records here are about equally long
    data[5 * record_size + record_size // 2] ^= 0xFF
    write_bytes(path, bytes(data))
    with pytest.raises(DataError, match=r"part-001\.tfrecord: record [45] is unreadable"):
        list(static(directory, num_epochs=1))


def test_truncated_shard_names_the_file(static_dir, tmp_path):
    directory = copy_dataset(static_dir, tmp_path / "d")
    path = os.path.join(directory, "part-002.tfrecord")
    write_bytes(path, read_bytes(path)[:-10])
    with pytest.raises(DataError, match=r"part-002\.tfrecord: record 39 is unreadable"):
        list(static(directory, num_epochs=1))


def test_truncated_shard_without_metadata_names_the_file(tmp_path):
    directory = write_dataset(tmp_path, "static", metadata=False, files=1)
    path = os.path.join(directory, "part-000.tfrecord")
    write_bytes(path, read_bytes(path)[:-10])
    with pytest.raises(DataError, match=r"part-000\.tfrecord: .*corrupt or truncated"):
        static(os.path.join(directory, "*.tfrecord"))


def test_record_of_another_length_without_metadata_names_file_and_record(tmp_path):
    directory = write_dataset(tmp_path, "static", metadata=False, files=1)
    encoder = records.ExampleEncoder("static")
    with tf.io.TFRecordWriter(os.path.join(directory, "part-001.tfrecord")) as writer:
        for r in range(PER_FILE):
            c = record_content(1, r)
            seq = SEQ if r != 6 else SEQ + 4
            ints = [list(c[k]) + [0] * (seq - SEQ) for k in records.INT_FEATURES]
            ints += [c["masked_lm_positions"], c["masked_lm_ids"]]
            writer.write(encoder.encode(ints, c["masked_lm_weights"], 0))
    with pytest.raises(DataError, match=r"part-001\.tfrecord: record 6 does not match .*input_ids\[16\]"):
        list(static(os.path.join(directory, "*.tfrecord"), num_epochs=1))


def test_max_seq_length_mismatch_names_both_values(static_dir):
    with pytest.raises(DataError, match=r"metadata\.json: settings\.max_seq_length is 16 but 128 is wanted"):
        static(static_dir, max_seq_length=128)


def test_max_seq_length_mismatch_without_metadata_names_both_values(tmp_path):
    directory = write_dataset(tmp_path, "static", metadata=False, files=1)
    with pytest.raises(DataError, match=r"max_seq_length 16 but 512 is wanted"):
        static(os.path.join(directory, "*.tfrecord"), max_seq_length=512)


def test_vocab_mismatch_names_both_values(static_dir):
    with pytest.raises(DataError, match=r"vocab\.sha256 is 'abc123' but 'fff' is wanted"):
        static(static_dir, vocab_sha256="fff")


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(DataError, match=r"nothing-\*\.tfrecord: matches no shard files"):
        static(str(tmp_path / "nothing-*.tfrecord"))


def test_empty_directory(tmp_path):
    with pytest.raises(DataError, match=r"directory without metadata\.json"):
        static(str(tmp_path))


def test_fewer_examples_than_one_batch_per_stream(static_dir):
    with pytest.raises(
        DataError,
        match=r"stream 1 of 2 gets 40 examples per epoch, fewer than its 64 of each global batch of 128; "
        r"use more data, a smaller batch or fewer streams",
    ):
        static(static_dir, batch_size=64, process_index=1, process_count=2, streams=2)


def test_dynamic_masking_of_already_masked_shards(static_dir):
    with pytest.raises(DataError, match="already masked"):
        dynamic(static_dir)


def test_static_masking_of_unmasked_shards(unmasked_dir):
    with pytest.raises(DataError, match="hold no masks"):
        static(unmasked_dir)


# Resuming with another process count: tests/test_elastic_data.py.


def test_resume_with_another_seed_is_refused(static_dir):
    running = static(static_dir, seed=1)
    with pytest.raises(ConfigError, match="seed 1 but the pipeline seed is 2"):
        static(static_dir, seed=2, state=running.state())


def test_comma_separated_globs_number_files_in_the_order_given(static_dir):
    files = ",".join(os.path.join(static_dir, f"part-00{f}.tfrecord") for f in (2, 0))
    pipeline = static(files, with_example_ids=True)
    seen = by_example(take(pipeline, pipeline.batches_per_epoch))
    assert sorted(seen) == [f << ID_SHIFT | r for f in (0, 1) for r in range(PER_FILE)]
    # File 0 of this dataset is part-002: its records come from there.
    np.testing.assert_array_equal(seen[5]["input_ids"], record_content(2, 5)["input_ids"])
