"""`create_pretraining_data`: a corpus -> masked (or unmasked) instance shards + metadata.json.

Streaming, parallel and a function of (corpus, settings, seed) alone:

* The corpus is read once, in order, and cut into *blocks*: runs of
  consecutive documents closed as soon as a block holds `block_size`
  documents or `block_chars` characters, and at least two documents. Only
  the blocks in flight are in memory (2 per worker).
* A block is the unit of work (a worker process segments, tokenizes, makes
  instances, masks and serializes it) and the *neighbourhood*: NSP's random
  next segments come from the other documents of the same block.
* Randomness: document d, dupe k draws from a generator seeded with
  sha256(seed, k, key of d); the packed modes and the order of a block's
  records use sha256(seed, k or "order", key of the block's first document)
  (mode "packed": the order in which dupe k lays the block's documents out).
  So no record depends on which worker made it, or how many there were.
* Block i goes to shard i mod num_shards, its records shuffled within the
  block; shards are filled in block order, written under temporary names and
  renamed when all are complete; metadata.json is written last (a dataset
  without one is incomplete).
* One run per output directory: a dataset already there (metadata.json or
  shards of the same names, any shard count) is refused unless `overwrite`,
  which removes it first; temporary shards a killed run left are removed.
  SIGTERM / SIGINT raise `Stopped`, so the temporary shards are removed then too.
* The tokenizing happens in the workers: with worker processes the main
  process only reads, blocks and writes bytes; a forkserver imports this
  module once and forks the workers from there. No process imports TensorFlow.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from bert_jax.data import corpus, instances, masking, records
from bert_jax.errors import ConfigError, DataError, UserError
from bert_jax.tokenization import load_tokenizer

MODES = ("nsp", "sop", "mlm_packed", "packed")
MASKINGS = ("static", "none")
_SHARD_PATTERN = re.compile(r"^(?P<base>.+)@(?P<count>\d+)$")


@dataclasses.dataclass
class CreateDataOptions:
    """Settings of `create_pretraining_data` (names as the original script's flags where it had them)."""

    vocab_file: str = ""
    do_lower_case: bool = True
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    random_seed: int = 12345
    dupe_factor: int = 10
    short_seq_prob: float = 0.1
    do_whole_word_mask: bool = False
    ngram_max: int = 1  # ALBERT: mask spans of up to this many words (1: BERT)
    mode: str = "nsp"  # nsp | sop | mlm_packed | packed (documents packed whole, document_ids)
    masking: str = "static"  # static (masks in the records) | none (masked later, in tf.data)
    num_workers: int = 1
    num_shards: int = 1
    block_size: int = 256  # documents per block (the NSP neighbourhood)
    block_chars: int = 1_000_000  # or fewer documents, once a block holds this many characters
    input_format: str = "auto"  # see bert_jax.data.corpus
    tfds_data_dir: str | None = None
    progress: bool = False
    overwrite: bool = False  # replace a dataset already in the output directory (else refused)

    def validate(self) -> None:
        """ConfigError naming the first setting that cannot work."""
        checks = [
            (bool(self.vocab_file), "vocab_file is required (a BERT vocab.txt)"),
            (self.mode in MODES, f"mode {self.mode!r} is not one of {', '.join(MODES)}"),
            (self.masking in MASKINGS, f"masking {self.masking!r} is not one of {', '.join(MASKINGS)}"),
            (self.max_seq_length >= 8, f"max_seq_length {self.max_seq_length} must be at least 8"),
            (self.max_predictions_per_seq >= 1, "max_predictions_per_seq must be at least 1"),
            (self.ngram_max >= 1, f"ngram_max {self.ngram_max} must be at least 1"),
            (0.0 < self.masked_lm_prob < 1.0, f"masked_lm_prob {self.masked_lm_prob} must be in (0, 1)"),
            (0.0 <= self.short_seq_prob <= 1.0, f"short_seq_prob {self.short_seq_prob} must be in [0, 1]"),
            (self.dupe_factor >= 1, f"dupe_factor {self.dupe_factor} must be at least 1"),
            (self.num_workers >= 1, f"num_workers {self.num_workers} must be at least 1"),
            (self.num_shards >= 1, f"num_shards {self.num_shards} must be at least 1"),
            (self.block_size >= 2, f"block_size {self.block_size} must be at least 2"),
            (self.block_chars >= 1, f"block_chars {self.block_chars} must be at least 1"),
            (self.input_format in corpus.FORMATS, f"input_format {self.input_format!r} is not one of {corpus.FORMATS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"create-data: {message}")

    def settings(self) -> dict:
        """What metadata.json records under "settings" (everything that shapes the records)."""
        fields = dataclasses.asdict(self)
        for transient in ("vocab_file", "do_lower_case", "num_workers", "progress", "tfds_data_dir", "overwrite"):
            fields.pop(transient)
        return fields


def record_features(options: CreateDataOptions) -> dict[str, dict]:
    """The features of a record these options make (records.feature_lengths)."""
    return records.feature_lengths(
        options.max_seq_length, options.max_predictions_per_seq, options.masking, packed=options.mode == "packed"
    )


# ---- output names ----


def shard_paths(output: str, num_shards: int) -> list[str]:
    """Shard files for `output`.

    `DIR` (or `DIR/`): DIR/part-00000-of-0000N.tfrecord ...;
    `PATH@N`: PATH-00000-of-0000N ... (N overrides num_shards);
    `A,B,...`: those files (the original's form); one `FILE.tfrecord` with num_shards == 1: that file.
    All shards must share one directory (metadata.json goes there).
    """
    output = output.strip()
    match = _SHARD_PATTERN.match(output)
    if "," in output:
        paths = [p.strip() for p in output.split(",") if p.strip()]
    elif match:
        count = int(match["count"])
        if count < 1:
            raise ConfigError(f"output {output!r}: the shard count after @ must be at least 1")
        paths = [f"{match['base']}-{i:05d}-of-{count:05d}" for i in range(count)]
    elif num_shards == 1 and not os.path.isdir(output) and output.endswith((".tfrecord", ".tfrecords")):
        paths = [output]
    else:
        paths = [os.path.join(output, f"part-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]
    directories = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(directories) != 1:
        raise ConfigError(f"output {output!r}: put all shards in one directory (metadata.json goes beside them)")
    return paths


# ---- blocks ----


def document_chars(doc: corpus.RawDocument) -> int:
    """Characters of a raw document, as the block rule counts them."""
    return sum(len(t) for t in doc.texts)


def iter_blocks(
    raw_documents: Iterable, block_size: int, block_chars: int, chars_of: Callable = document_chars
) -> Iterator[list]:
    """Consecutive documents grouped into blocks (the rule in the module docstring).

    `chars_of(item)` gives an item's characters: `document_chars` for raw
    documents; the Beam path passes bare character counts (`chars_of=int`).
    """
    block: list = []
    chars = 0
    for doc in raw_documents:
        block.append(doc)
        chars += chars_of(doc)
        if len(block) >= 2 and (len(block) >= block_size or chars >= block_chars):
            yield block
            block, chars = [], 0
    if block:
        yield block


def derived_seed(*parts: object) -> int:
    """A 64-bit seed from any values (stable across processes, unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


# ---- one block ----


@dataclasses.dataclass
class BlockResult:
    """What one block produced: serialized records and the counts metadata.json sums up."""

    records: list[bytes]
    stats: corpus.CorpusStats
    instances: int = 0
    tokens: int = 0  # corpus tokens (once, not per dupe)
    unk_tokens: int = 0
    next_sentence_label_1: int = 0
    masked_positions: int = 0
    lengths: np.ndarray | None = None  # int64 [max_seq_length + 1]: instances per unpadded length
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class BlockProcessor:
    """Turns a block of raw documents into serialized records (in a worker, or in-process)."""

    def __init__(self, options: CreateDataOptions):
        self.options = options
        self.tokenizer = load_tokenizer(options.vocab_file, lower_case=options.do_lower_case)
        self.serializer = records.ExampleSerializer(record_features(options))

    def tokenize(
        self, block: list[corpus.RawDocument], result: BlockResult
    ) -> tuple[list[str], list[instances.Document]]:
        """(keys, tokenized documents); sentences without tokens are dropped, documents without any skipped."""
        docs = [corpus.segment_document(raw, result.stats) for raw in block]
        docs = [d for d in docs if corpus.accept_document(d, result.stats)]
        sentences = [s for d in docs for s in d.sentences]
        ids, splits = self.tokenizer.encode_flat(sentences)
        ids = ids.astype(np.int32)
        result.tokens += len(ids)
        result.unk_tokens += int(np.count_nonzero(ids == self.tokenizer.unk_id))
        splits = splits.tolist()
        keys, tokenized, start = [], [], 0
        for doc in docs:
            ends = splits[start : start + len(doc.sentences) + 1]
            start += len(doc.sentences)
            # Bounds relative to the document's first token; a repeated bound is an empty sentence.
            bounds = [0] + [end - ends[0] for prev, end in zip(ends[:-1], ends[1:], strict=True) if end != prev]
            if len(bounds) > 1:
                keys.append(doc.key)
                tokenized.append(instances.Document(ids[ends[0] : ends[-1]], bounds))
            else:
                result.skipped["documents_without_tokens"] += 1
        return keys, tokenized

    def instances(
        self, keys: list[str], docs: list[instances.Document], dupe: int, skipped: collections.Counter
    ) -> list[instances.Instance]:
        """Instances of one dupe of the block (before masking)."""
        o = self.options
        if o.mode == "mlm_packed":
            return instances.pack_sequences(docs, o.max_seq_length, self.tokenizer.sep_id)
        if o.mode == "packed":
            # Each dupe lays the block's documents out in its own order, so rows differ between dupes.
            order = np.random.default_rng(derived_seed(o.random_seed, dupe, "packed", keys[0])).permutation(len(docs))
            tok = self.tokenizer
            return instances.pack_documents([docs[i] for i in order], o.max_seq_length, tok.cls_id, tok.sep_id)
        made = []
        for index, key in enumerate(keys):
            rng = np.random.default_rng(derived_seed(o.random_seed, dupe, key))
            made += instances.pair_instances(
                docs,
                index,
                mode=o.mode,
                max_seq_length=o.max_seq_length,
                short_seq_prob=o.short_seq_prob,
                rng=rng,
                skipped=skipped,
            )
        return made

    def features(self, batch: list, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Padded features of a batch of instances (or packed rows), masked unless masking == "none"."""
        o, tok = self.options, self.tokenizer
        if o.mode == "packed":
            input_ids, document_ids, lengths = instances.assemble_packed(batch, o.max_seq_length)
            segment_ids, labels = np.zeros_like(input_ids), np.zeros(len(batch), np.int32)
        else:
            input_ids, segment_ids, lengths = instances.assemble(batch, o.max_seq_length, tok.cls_id, tok.sep_id)
            labels = np.array([inst.label for inst in batch], np.int32)
        features = {
            "input_ids": input_ids,
            "input_mask": (np.arange(o.max_seq_length)[None, :] < lengths[:, None]).astype(np.int32),
            "segment_ids": segment_ids,
            "next_sentence_labels": labels,
            "lengths": lengths,
        }
        if o.mode == "packed":
            features[records.DOCUMENT_FEATURE] = document_ids
        if o.masking == "static":
            # [CLS]/[SEP] anywhere in the row (every packed document has its own) and padding are never masked.
            special = (input_ids == tok.cls_id) | (input_ids == tok.sep_id)
            maskable = features["input_mask"].astype(bool) & ~special
            continuation = tok.is_continuation_id[input_ids] if o.do_whole_word_mask else None
            features.update(
                masking.mask_batch(
                    input_ids,
                    lengths,
                    maskable,
                    masked_lm_prob=o.masked_lm_prob,
                    max_predictions_per_seq=o.max_predictions_per_seq,
                    vocab_size=tok.vocab_size,
                    mask_id=tok.mask_id,
                    rng=rng,
                    is_continuation=continuation,
                    ngram_max=o.ngram_max,
                )
            )
        return features

    def __call__(self, block: list[corpus.RawDocument]) -> BlockResult:
        o = self.options
        result = BlockResult(records=[], stats=corpus.CorpusStats())
        result.lengths = np.zeros(o.max_seq_length + 1, np.int64)
        keys, docs = self.tokenize(block, result)
        if not docs:
            return result
        made = [inst for dupe in range(o.dupe_factor) for inst in self.instances(keys, docs, dupe, result.skipped)]
        if not made:
            return result
        # Masks and record order: one generator per block, keyed by its first document.
        rng = np.random.default_rng(derived_seed(o.random_seed, "mask", keys[0]))
        features = self.features(made, rng)
        order = rng.permutation(len(made))
        features = {name: value[order] for name, value in features.items()}
        labels = features["next_sentence_labels"][:, None]
        result.records = self.serializer.serialize({**features, "next_sentence_labels": labels})
        result.instances = len(made)
        result.lengths += np.bincount(features["lengths"], minlength=o.max_seq_length + 1)
        result.next_sentence_label_1 = int(features["next_sentence_labels"].sum())
        if "masked_lm_weights" in features:
            result.masked_positions = int(features["masked_lm_weights"].sum())
        return result


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """What metadata.json records of the vocabulary (the attributes `_metadata` reads of a tokenizer)."""

    vocab_sha256: str
    vocab_size: int

    @classmethod
    def of(cls, tokenizer) -> VocabInfo:
        return cls(tokenizer.vocab_sha256, tokenizer.vocab_size)


class _InProcess:
    """num_workers == 1: every block in this process, with one tokenizer."""

    def __init__(self, options: CreateDataOptions):
        self._processor = BlockProcessor(options)

    def vocab(self) -> VocabInfo:
        return VocabInfo.of(self._processor.tokenizer)

    def map(self, blocks: Iterable[list]) -> Iterator[BlockResult]:
        for block in blocks:
            yield self._processor(block)

    def close(self) -> None:
        pass


# The worker process's processor, or the one-line error building it raised
# (handed back by the first task, not lost as a broken pool).
_WORKER: BlockProcessor | UserError | None = None
# What a worker needs, imported once by the forkserver rather than by each
# worker. Not TensorFlow: the tokenizers encode without it (the Rust
# `tokenizers` or sentencepiece), and importing it cost ~7 CPU-s per run.
_WORKER_PRELOAD = [__name__]


def _init_worker(options: CreateDataOptions) -> None:
    # One process per core already: the Rust tokenizer's own thread pool would only oversubscribe them.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    global _WORKER
    try:
        _WORKER = BlockProcessor(options)
    except UserError as e:
        _WORKER = e


def _processor() -> BlockProcessor:
    if isinstance(_WORKER, UserError):
        raise _WORKER
    return _WORKER


def _work(block: list[corpus.RawDocument]) -> BlockResult:
    return _processor()(block)


def _worker_vocab() -> VocabInfo:
    return VocabInfo.of(_processor().tokenizer)


class _WorkerPool:
    """num_workers > 1: blocks to forked worker processes, results in block order."""

    def __init__(self, options: CreateDataOptions):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_PRELOAD)
        self._window = 2 * options.num_workers  # blocks in flight: what bounds memory
        self._pool = concurrent.futures.ProcessPoolExecutor(
            options.num_workers, mp_context=context, initializer=_init_worker, initargs=(options,)
        )

    def vocab(self) -> VocabInfo:
        """From a worker's tokenizer (its UserError if the vocab is bad): the main process builds none."""
        return self._pool.submit(_worker_vocab).result()

    def map(self, blocks: Iterable[list]) -> Iterator[BlockResult]:
        pending: collections.deque = collections.deque()
        for block in blocks:
            pending.append(self._pool.submit(_work, block))
            if len(pending) >= self._window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


# ---- the whole run ----


@dataclasses.dataclass
class _Totals:
    stats: corpus.CorpusStats
    lengths: np.ndarray
    instances: int = 0
    tokens: int = 0
    unk_tokens: int = 0
    next_sentence_label_1: int = 0
    masked_positions: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, result: BlockResult) -> None:
        s, r = self.stats, result.stats
        s.documents += r.documents
        s.sentences += r.sentences
        s.characters += r.characters
        for reason, count in r.skipped.items():
            s.note(reason, r.first_seen.get(reason, ""), count)
        self.skipped.update(result.skipped)
        self.lengths += result.lengths
        self.instances += result.instances
        self.tokens += result.tokens
        self.unk_tokens += result.unk_tokens
        self.next_sentence_label_1 += result.next_sentence_label_1
        self.masked_positions += result.masked_positions


# ---- the output directory: one run's shards, nothing left behind ----

_SHARD_NUMBER = re.compile(r"-\d{5}-of-\d{5}")


class Stopped(UserError):
    """create-data was stopped by a signal; the shards it was writing are removed."""

    def __init__(self, signum: int, directory: str):
        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name}; the partial shards were removed and nothing of this run "
            f"is kept in {directory}; run the same command again to create the dataset"
        )


@contextlib.contextmanager
def stop_on_signals(directory: str) -> Iterator[None]:
    """SIGTERM and SIGINT raise `Stopped` in the main thread, so the shard writers'
    `abort` runs (Python's default SIGTERM ends the process on the spot and
    leaves the temporary shards behind). A second signal during that cleanup is
    ignored rather than cutting it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = []

    def handler(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise Stopped(signum, directory)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _shard_family(paths: list[str]) -> re.Pattern:
    """Names of the shards a run with any shard count would write for these
    paths (`part-00001-of-00004.tfrecord` for `part-00000-of-00002.tfrecord`)."""
    alternatives = []
    for name in sorted({os.path.basename(p) for p in paths}):
        match = _SHARD_NUMBER.search(name)
        if match:
            before, after = name[: match.start()], name[match.end() :]
            alternatives.append(re.escape(before) + _SHARD_NUMBER.pattern + re.escape(after))
        else:
            alternatives.append(re.escape(name))
    return re.compile("^(?:" + "|".join(alternatives) + ")$")


def _listed_shards(directory: str) -> set[str]:
    """The shard names an existing metadata.json in `directory` lists (none if unreadable)."""
    try:
        with open(os.path.join(directory, records.METADATA_FILE), encoding="utf-8") as f:
            return {str(s["file"]) for s in json.load(f).get("shards", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()


def existing_dataset(directory: str, paths: list[str]) -> tuple[list[str], list[str]]:
    """(dataset files, stale temporary files) already in `directory`: the
    metadata.json, shards of these paths' family (any shard count) or listed in
    that metadata; and the temporary shards a killed run left (never complete)."""
    if not os.path.isdir(directory):
        return [], []
    family = _shard_family(paths)
    listed = _listed_shards(directory)
    dataset, stale = [], []
    for name in sorted(os.listdir(directory)):
        base = name.split(records.TEMP_MARK, 1)[0]
        ours = base == records.METADATA_FILE or base in listed or family.match(base)
        if not ours or not os.path.isfile(os.path.join(directory, name)):
            continue
        (stale if records.TEMP_MARK in name else dataset).append(name)
    return dataset, stale


def prepare_output_directory(directory: str, paths: list[str], overwrite: bool) -> None:
    """Makes `directory` ready for one run's shards: removes what a killed run
    left under temporary names, and refuses (DataError) a dataset already there
    unless `overwrite`, which removes it first. Two runs' shards never mix
    (a 2-shard run beside an old 4-shard one would pass for a 6-shard set)."""
    os.makedirs(directory, exist_ok=True)
    dataset, stale = existing_dataset(directory, paths)
    for name in stale:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, name))
    if dataset and not overwrite:
        shown = ", ".join(dataset[:3]) + (f", ... ({len(dataset)} files)" if len(dataset) > 3 else "")
        raise DataError(
            f"output directory {directory} already holds a dataset ({shown}); one directory holds one run's "
            "shards: pass --overwrite to replace it, or write to another directory"
        )
    # Metadata first: a directory whose shards are being replaced must never pass for a dataset.
    for name in sorted(dataset, key=lambda n: n != records.METADATA_FILE):
        os.remove(os.path.join(directory, name))


def create_pretraining_data(options: CreateDataOptions, input_spec: str, output: str) -> dict:
    """Write instance shards and metadata.json for `input_spec` into `output`; returns the metadata.

    output: a directory, `PATH@N` or comma-separated files (see `shard_paths`).
    The returned dict is metadata.json's content plus "elapsed_s" and
    "instances_per_s". Raises UserError subclasses for bad settings, a bad
    vocab or corpus, and a corpus that yields no instance.
    """
    options.validate()
    paths = shard_paths(output, options.num_shards)
    with stop_on_signals(os.path.dirname(os.path.abspath(paths[0]))):
        runner = _InProcess(options) if options.num_workers == 1 else _WorkerPool(options)
        try:
            return _create(options, input_spec, paths, runner)
        finally:
            runner.close()


def _create(
    options: CreateDataOptions, input_spec: str, paths: list[str], runner: _InProcess | _WorkerPool
) -> dict:
    from tqdm import tqdm  # the bar only: keep import of this module light

    vocab = runner.vocab()  # a bad vocab fails here, before the output is touched
    directory = os.path.dirname(os.path.abspath(paths[0]))
    prepare_output_directory(directory, paths, options.overwrite)

    reader_stats = corpus.CorpusStats()
    raw = corpus.iter_raw_documents(input_spec, options.input_format, reader_stats, options.tfds_data_dir)
    blocks = iter_blocks(raw, options.block_size, options.block_chars)
    totals = _Totals(stats=corpus.CorpusStats(), lengths=np.zeros(options.max_seq_length + 1, np.int64))
    writers = [records.ShardWriter(p) for p in paths]
    start = time.monotonic()
    bar = tqdm(desc="create-data", unit=" docs", disable=not options.progress, dynamic_ncols=True)
    try:
        for index, result in enumerate(runner.map(blocks)):
            shard = writers[index % len(writers)]
            for record in result.records:
                shard.write(record)
            totals.add(result)
            bar.update(result.stats.documents)
            elapsed = max(time.monotonic() - start, 1e-9)
            bar.set_postfix(instances=totals.instances, inst_per_s=f"{totals.instances / elapsed:.0f}")
        if totals.instances == 0:
            raise DataError(
                f"input {input_spec!r} gave no instance ({reader_stats.files} files, "
                f"{totals.stats.documents} documents, skipped {dict(totals.stats.skipped + reader_stats.skipped)}); "
                "check the path, format and vocab"
            )
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    finally:
        bar.close()
    elapsed = time.monotonic() - start
    metadata = _metadata(options, input_spec, vocab, paths, writers, totals, reader_stats)
    records.write_metadata(directory, metadata)
    return {**metadata, "elapsed_s": elapsed, "instances_per_s": totals.instances / max(elapsed, 1e-9)}


def _metadata(options, input_spec, tokenizer, paths, writers, totals: _Totals, reader_stats) -> dict:
    """metadata.json's content; `tokenizer`: anything with vocab_sha256 and vocab_size (a VocabInfo)."""
    stats = totals.stats
    stats.files = reader_stats.files
    for reason, count in reader_stats.skipped.items():
        stats.note(reason, reader_stats.first_seen.get(reason, ""), count)
    for reason, count in totals.skipped.items():
        stats.skipped[reason] += count
    corpus_counts = stats.as_dict()
    return {
        "format": records.FORMAT,
        "input": input_spec,
        "vocab": {
            "file": os.path.abspath(options.vocab_file),
            "sha256": tokenizer.vocab_sha256,
            "size": tokenizer.vocab_size,
            "do_lower_case": options.do_lower_case,
        },
        "settings": {**options.settings(), "num_shards": len(paths)},
        "features": record_features(options),
        "counts": {
            **corpus_counts,
            "instances": totals.instances,
            "tokens": totals.tokens,
            "unk_tokens": totals.unk_tokens,
            "next_sentence_label_1": totals.next_sentence_label_1,
            "masked_positions": totals.masked_positions,
            "instance_lengths": {str(n): int(c) for n, c in enumerate(totals.lengths) if c},
        },
        "shards": [{"file": os.path.basename(w.path), "instances": w.count} for w in writers],
    }
