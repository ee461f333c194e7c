"""Where pre-training batches come from: the real pipeline, the data built in
the workdir from a corpus, or synthetic batches for tests and benchmarks.

Every source is an iterator of per-process NumPy batches (docs/design.md)
with a JSON-able `state()`; built with `state=` it continues exactly there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from bert_jax import atomic
from bert_jax.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EVAL_SHARD = 0  # of the shards built from a corpus, this one is held out for evaluation
NUM_BUILT_SHARDS = 10


class BatchSource(Protocol):
    def __next__(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What one process must read: its rows [row_start, row_stop) of each
    global batch of `global_batch` examples (multi-process runs), and the
    dynamic masking rate of the training data (0: data.masked_lm_prob; a
    phase's rate, bert_jax.train.phases; held-out data keeps the data
    section's, so evaluations of every phase compare)."""

    global_batch: int
    row_start: int
    row_stop: int
    seq_len: int
    max_predictions: int
    process_index: int = 0
    process_count: int = 1
    masked_lm_prob: float = 0.0

    @property
    def per_process_batch(self) -> int:
        return self.row_stop - self.row_start


# A factory: (spec, split "train"/"eval", files, resume state or None) -> source.
SourceFactory = Callable[[SourceSpec, str, str, "dict | None"], BatchSource]


class SyntheticBatches:
    """Random pre-training batches; batch i is a function of (seed, i) only,
    so every process slices the same global batch and resume is exact."""

    def __init__(self, spec: SourceSpec, vocab_size: int, seed: int, state: dict | None = None):
        self.spec, self.vocab_size, self.seed = spec, vocab_size, seed
        self.index = int((state or {}).get("index", 0))

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        s = self.spec
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        b, n, p = s.global_batch, s.seq_len, s.max_predictions
        lengths = rng.integers(n // 2, n + 1, b)
        input_mask = (np.arange(n)[None] < lengths[:, None]).astype(np.int32)
        input_ids = rng.integers(5, self.vocab_size, (b, n)).astype(np.int32) * input_mask
        segment_ids = ((np.arange(n)[None] >= (lengths // 2)[:, None]) * input_mask).astype(np.int32)
        positions = np.sort(rng.integers(1, n // 2, (b, p)), axis=1).astype(np.int32)
        batch = {
            "input_ids": input_ids,
            "input_mask": input_mask,
            "segment_ids": segment_ids,
            "masked_lm_positions": positions,
            "masked_lm_ids": np.take_along_axis(input_ids, positions, 1),
            "masked_lm_weights": (rng.random((b, p)) < 0.9).astype(np.float32),
            "next_sentence_labels": rng.integers(0, 2, b).astype(np.int32),
        }
        return {k: v[s.row_start : s.row_stop] for k, v in batch.items()}

    def state(self) -> dict[str, Any]:
        return {"index": self.index}


def synthetic_factory(vocab_size: int, seed: int) -> SourceFactory:
    def make(spec: SourceSpec, split: str, files: str, state: dict | None) -> BatchSource:
        return SyntheticBatches(spec, vocab_size, seed + (0 if split == "train" else 1_000_003), state)

    return make


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pipeline_factory(data_cfg, seed: int, vocab_file: str = "") -> SourceFactory:
    """The real input pipeline (bert_jax.data.input_pipeline) over created shards."""
    from bert_jax.data import input_pipeline

    family_tokenizer = _family_tokenizer(vocab_file)
    if family_tokenizer is not None:
        vocab_sha = family_tokenizer.vocab_sha256  # BPE: of vocab.json + merges.txt, as create-data wrote
    else:
        vocab_sha = file_sha256(vocab_file) if vocab_file and os.path.isfile(vocab_file) else None
    dynamic = None
    if data_cfg.masking == "dynamic":
        from bert_jax.data.dynamic_masking import MaskingOptions

        if not vocab_file:
            raise ConfigError(
                "data.masking='dynamic' needs data.vocab_file (the vocab the shards were made with)"
            )
        if int(data_cfg.get("ngram_max", 1)) > 1:
            raise ConfigError(
                f"data.ngram_max={data_cfg.ngram_max} with data.masking='dynamic'; n-gram masking is made by "
                "create-data: use data.masking='static' (or ngram_max=1)"
            )
        if family_tokenizer is not None:
            dynamic = _family_masking_options(family_tokenizer, data_cfg)
        else:
            with open(vocab_file, encoding="utf-8") as f:
                tokens = [line.rstrip("\n") for line in f]
            dynamic = MaskingOptions.from_tokens(
                tokens,
                masked_lm_prob=data_cfg.masked_lm_prob,
                max_predictions_per_seq=data_cfg.max_predictions_per_seq,
                whole_word_mask=data_cfg.do_whole_word_mask,
            )

    def make(spec: SourceSpec, split: str, files: str, state: dict | None) -> BatchSource:
        if not files:
            raise ConfigError(
                f"no {split} files: set config.data.{split}_files (or data.corpus to build them)"
            )
        part, parts = _batch_part(spec)
        return input_pipeline.PretrainingPipeline(
            files,
            spec.per_process_batch,
            masking=data_cfg.masking,
            dynamic=_phase_masking(dynamic, spec, split),
            seed=seed if split == "train" else seed + 1,
            process_index=part,
            process_count=parts,
            streams=int(data_cfg.get("streams", 0)) or None,
            # Held-out data is often one file; its streams may share it (data.streams is the training data's).
            share_files=split != "train",
            shuffle_buffer=data_cfg.shuffle_buffer if split == "train" else 1,
            prefetch=data_cfg.prefetch,
            num_epochs=None if split == "train" else 1,
            max_seq_length=spec.seq_len,
            max_predictions_per_seq=spec.max_predictions,
            vocab_sha256=vocab_sha,
            state=state,
        )

    return make


def _phase_masking(dynamic, spec: SourceSpec, split: str):
    """The dynamic masking options of one source: the spec's masked positions
    per sequence and, for the training split, the spec's (phase's) rate."""
    if dynamic is None:
        return None
    rate = spec.masked_lm_prob if split == "train" and spec.masked_lm_prob else dynamic.masked_lm_prob
    return dataclasses.replace(dynamic, max_predictions_per_seq=spec.max_predictions, masked_lm_prob=rate)


def _batch_part(spec: SourceSpec) -> tuple[int, int]:
    """(index, count) of this process's rows among equal parts of the global batch.

    The pipeline gives part k of n the rows [k B/n, (k+1) B/n); the mesh
    decides which rows a process's devices hold, so the part comes from the
    rows, not from the process index.
    """
    size = spec.per_process_batch
    if size < 1 or spec.row_start % size or spec.global_batch % size:
        raise ConfigError(
            f"process {spec.process_index} holds rows {spec.row_start}-{spec.row_stop} of a global batch of "
            f"{spec.global_batch}, not one of equal parts; use a mesh whose data axis splits the batch evenly "
            "over processes"
        )
    return spec.row_start // size, spec.global_batch // size


def _family_tokenizer(vocab_file: str):
    """The tokenizer of a SentencePiece `.model`, a byte-level BPE `vocab.json`
    or a tokenizer folder (bert_jax.tokenization.load_tokenizer); None for a
    WordPiece vocab.txt, which is read as lines (no TF graph to build)."""
    if not vocab_file or not (os.path.isdir(vocab_file) or vocab_file.endswith((".model", ".json"))):
        return None
    from bert_jax.tokenization import load_tokenizer

    return load_tokenizer(vocab_file)


def _family_masking_options(tokenizer, data_cfg):
    """Dynamic masking for a SentencePiece / byte-level BPE vocabulary: its
    five special ids are never masked nor drawn as replacements; whole words
    from the tokenizer's `is_continuation_id` (no "##" pieces there)."""
    from bert_jax.data.dynamic_masking import MaskingOptions

    t = tokenizer
    return MaskingOptions(
        vocab_size=t.vocab_size,
        mask_id=t.mask_id,
        never_mask_ids=(t.cls_id, t.sep_id, t.pad_id),
        special_ids=tuple(sorted({t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id})),
        masked_lm_prob=data_cfg.masked_lm_prob,
        max_predictions_per_seq=data_cfg.max_predictions_per_seq,
        is_continuation=t.is_continuation_id if data_cfg.do_whole_word_mask else None,
    )


def vocab_size_of(vocab_file: str) -> int:
    with open(vocab_file, encoding="utf-8") as f:
        return sum(1 for _ in f)


def build_vocab(data_cfg, workdir: str) -> str:
    """WORKDIR/vocab.txt learnt from data.corpus (kept when already there)."""
    from bert_jax.data import vocab

    path = os.path.join(workdir, "vocab.txt")
    if os.path.isfile(path):
        return path
    if data_cfg.vocab_size <= 0:
        raise ConfigError(
            "data.vocab_file is empty; set it, or data.vocab_size to learn one from data.corpus"
        )
    print(f"building a {data_cfg.vocab_size}-token WordPiece vocab from {data_cfg.corpus}", flush=True)
    with atomic.atomic_path(path) as tmp:
        vocab.build_wordpiece_vocab(data_cfg.corpus, data_cfg.vocab_size, data_cfg.do_lower_case, tmp)
    return path


def build_shards(
    data_cfg,
    vocab_file: str,
    corpus: str,
    output: str,
    seq_len: int,
    max_predictions: int,
    num_shards: int,
    seed: int,
) -> str:
    """Created shards of `corpus` in `output` (kept when complete: metadata.json exists)."""
    from bert_jax.data import create_data

    if os.path.isfile(os.path.join(output, "metadata.json")):
        return output
    print(f"creating pre-training data (seq {seq_len}) from {corpus} in {output}", flush=True)
    options = create_data.CreateDataOptions(
        vocab_file=vocab_file,
        do_lower_case=data_cfg.do_lower_case,
        max_seq_length=seq_len,
        max_predictions_per_seq=max_predictions,
        masked_lm_prob=data_cfg.masked_lm_prob,
        random_seed=seed,
        dupe_factor=data_cfg.dupe_factor,
        short_seq_prob=data_cfg.short_seq_prob,
        do_whole_word_mask=data_cfg.do_whole_word_mask,
        ngram_max=int(data_cfg.get("ngram_max", 1)),
        mode=data_cfg.mode,
        masking="none" if data_cfg.masking == "dynamic" else "static",
        num_workers=max(1, min(4, os.cpu_count() or 1)),
        num_shards=num_shards,
        block_size=16,
    )
    create_data.create_pretraining_data(options, corpus, output)
    return output


def shard_files(directory: str) -> list[str]:
    from bert_jax.data import records

    return records.read_metadata(directory)["shard_paths"]


def prepare_corpus_data(
    data_cfg, workdir: str, seq_len: int, max_predictions: int, seed: int
) -> tuple[str, str]:
    """(train_files, eval_files) built in WORKDIR/data/seq<L>_p<P>/ from
    data.corpus; without data.eval_corpus one shard in ten is held out."""
    out = os.path.join(workdir, "data", f"seq{seq_len}_p{max_predictions}")
    vocab_file = data_cfg.vocab_file or os.path.join(workdir, "vocab.txt")
    shards = build_shards(
        data_cfg,
        vocab_file,
        data_cfg.corpus,
        out,
        seq_len,
        max_predictions,
        1 if data_cfg.eval_corpus else NUM_BUILT_SHARDS,
        seed,
    )
    paths = shard_files(shards)
    if data_cfg.eval_corpus:
        eval_dir = build_shards(
            data_cfg, vocab_file, data_cfg.eval_corpus, out + "_eval", seq_len, max_predictions, 1, seed + 1
        )
        return ",".join(paths), ",".join(shard_files(eval_dir))
    nonempty = [p for p in paths if os.path.getsize(p) > 0]
    if len(nonempty) < 2:
        raise DataError(f"{data_cfg.corpus}: too little text to hold out an eval shard; set data.eval_corpus")
    return ",".join(nonempty[:EVAL_SHARD] + nonempty[EVAL_SHARD + 1 :]), nonempty[EVAL_SHARD]
