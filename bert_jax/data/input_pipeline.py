"""The pre-training input pipeline: TFRecord shards -> per-process NumPy batches, resumable exactly.

Elastic determinism: the sequence of *global* batches is a pure function of
(files, seed, global batch B, streams S), never of the process count P, so a
run stopped on 4 processes resumes on 2 and continues the same sequence.

Streams. The data is read as S independent streams (S: `streams`, from
config data.streams; automatic: the largest divisor of B not above
`MAX_AUTO_STREAMS`). With at least S files, stream s reads files s, s + S,
... (each file is read, and each record parsed, by exactly one process);
with fewer files the streams share them: stream s keeps records s, s + S,
... of the first S * (T // S) of their (stream-independent) interleaved
order of T records, all streams from one read of the files in one tf.data
graph (each process reads the files; each record is still parsed by one
process only), and all streams' epochs are equally long. Per stream epoch `e` the stream shuffles its
files and windows of `shuffle_buffer` records with seeds derived from
(seed, stream, e) only, batches `B / S` examples with drop_remainder (a
stream batch never crosses the stream's epoch) and, in dynamic mode, masks
every example as a pure function of (seed, example id, e). Streams may have
epochs of different lengths; each rolls over on its own.

Global batch i is the concatenation, over s = 0 .. S-1 in order, of stream
s's batch i. Process p of P (P divides S, S divides B) reads only streams
[p S/P, (p+1) S/P), so its rows are exactly rows [p B/P, (p+1) B/P) of
each global batch: the rows `jax.make_array_from_process_local_data` puts on
process p's devices (bert_jax/train/phases.py's `source_spec` names them).

Resume. All streams advance alike, so the position is one number, the count
of global batches taken; stream s resumes in its epoch i // batches_per_epoch_s,
skipping whole shuffle windows by arithmetic on the per-shard record counts
(`resume_plan`), never opening a shard the skipped records used up.

Example ids are `file_index << 32 | record_index` with files in canonical order
(metadata.json's shard list, else the sorted glob matches): they do not depend
on the number of processes or streams.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from bert_jax.data import records
from bert_jax.data.dynamic_masking import DynamicMasker, MaskingOptions, example_uniforms
from bert_jax.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ID_SHIFT = 32  # example id = file_index << ID_SHIFT | record_index
READ_CHUNK = 64  # records read from one file before the interleave moves to the next
STATE_FORMAT = "bert-jax-input/2"
OLD_STATE_FORMAT = "bert-jax-input/1"  # per-process streams, before elastic determinism
INT32_KEYS = records.INT_FEATURES + records.MLM_FEATURES[:2] + (records.DOCUMENT_FEATURE,)
# Automatic streams: at most this many, so one process reading all of them
# (a single-host run) keeps few open files and shuffle windows.
MAX_AUTO_STREAMS = 64


@dataclasses.dataclass
class ShardSet:
    """The shards of a dataset in canonical order, their record counts and the record features."""

    paths: list[str]
    features: dict[str, dict]  # {name: {"dtype", "length"}}, as records.feature_lengths
    metadata: dict | None
    counts: list[int] | None = None  # records per file, when known without reading

    @property
    def max_seq_length(self) -> int:
        return self.features["input_ids"]["length"]

    @property
    def masked(self) -> bool:
        return "masked_lm_ids" in self.features

    @property
    def packed(self) -> bool:
        """Rows of several documents (create-data mode "packed"): batches carry document_ids."""
        return records.DOCUMENT_FEATURE in self.features


def resolve_shards(spec: str) -> ShardSet:
    """A dataset directory (with metadata.json), a shard glob or comma-separated globs -> ShardSet."""
    spec = spec.strip()
    if not spec:
        raise DataError("no training files given; pass a dataset directory or a shard glob")
    if os.path.isdir(spec):
        if not os.path.exists(os.path.join(spec, records.METADATA_FILE)):
            raise DataError(
                f"{spec}: directory without {records.METADATA_FILE}; make it with `bert-jax create-data` "
                "or pass a glob of the shards"
            )
        metadata = records.read_metadata(spec)
        paths = metadata["shard_paths"]
        if not paths:
            raise DataError(f"{metadata['path']}: lists no shards; re-create the dataset")
        for path in paths:
            if not os.path.exists(path):
                raise DataError(f"{path}: listed in {metadata['path']} but missing; re-create the dataset")
    else:
        paths = _glob_shards(spec)
        has_metadata = os.path.exists(records.metadata_path(spec))
        metadata = records.read_metadata(spec) if has_metadata else None
    if metadata is None:
        return ShardSet(paths, _features_of_first_record(paths[0]), None)
    listed = {
        os.path.abspath(p): s["instances"]
        for p, s in zip(metadata["shard_paths"], metadata["shards"], strict=True)
    }
    counts = [listed.get(os.path.abspath(p)) for p in paths]
    return ShardSet(paths, metadata["features"], metadata, None if None in counts else counts)


def _glob_shards(spec: str) -> list[str]:
    paths: list[str] = []
    for pattern in (p.strip() for p in spec.split(",")):
        if not pattern:
            continue
        matches = [
            m
            for m in sorted(glob.glob(pattern))
            if os.path.isfile(m)
            and os.path.basename(m) != records.METADATA_FILE
            and records.TEMP_MARK not in m
        ]
        if not matches:
            raise DataError(f"{pattern}: matches no shard files; check the path or glob")
        paths.extend(m for m in matches if m not in paths)
    return paths


def _features_of_first_record(path: str) -> dict[str, dict]:
    """Feature lengths of shards without metadata (the original BERT's), from their first record."""
    first = next(records.iter_records(path), None)
    if first is None:
        raise DataError(f"{path}: holds no records; remove it from the glob or re-create it")
    try:
        example = tf.train.Example.FromString(first)
    except Exception:  # protobuf's DecodeError has no stable import path
        raise DataError(
            f"{path}: record 0 is not a tf.train.Example; is this a pre-training shard?"
        ) from None
    features = {}
    for name, feature in example.features.feature.items():
        if name in records.INT_FEATURES + records.MLM_FEATURES + (records.NSP_FEATURE, records.DOCUMENT_FEATURE):
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value
            features[name] = {"dtype": "float32" if kind == "float_list" else "int64", "length": len(values)}
    missing = [n for n in records.INT_FEATURES + (records.NSP_FEATURE,) if n not in features]
    if missing:
        raise DataError(f"{path}: record 0 lacks {', '.join(missing)}; is this a BERT pre-training shard?")
    return features


def count_records(path: str) -> int:
    """Records in one TFRecord file, reading (not parsing) it; DataError naming the file if corrupt."""
    try:
        return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.OpError as e:
        raise DataError(
            f"{path}: unreadable ({_first_line(e)}); the shard is corrupt or truncated, re-create it"
        ) from None


def _first_line(error: tf.errors.OpError) -> str:
    return (error.message or type(error).__name__).strip().splitlines()[0]


def resume_plan(
    counts: list[int], cycle_length: int, chunk: int, skip: int
) -> tuple[list[tuple[int, int]], int]:
    """Where `Dataset.interleave` stands after `skip` records, from the record counts alone.

    counts: records per file, in the order the interleave takes its inputs;
    each file yields chunks of `chunk` records (the last one shorter), and
    the interleave (block_length 1) takes one chunk per slot in turn,
    filling an empty slot with the next file when its turn comes (tf.data's
    order, deterministic or not parallel).

    Returns (inputs, drop): a fresh interleave with the same cycle_length over
    `inputs` -- (index into counts, chunks of it to skip, -1 for a file to
    yield nothing: one used up whose slot has not yet found so) -- starting at the
    slot whose turn it is, then dropping `drop` records, yields exactly the
    records after the first `skip`. Files used up before that point are not
    among the inputs, so they are never opened.
    """
    chunks = [-(-count // chunk) for count in counts]
    slots: list[list[int] | None] = [None] * cycle_length  # [file, chunks taken]
    next_input, turn, taken = 0, 0, 0
    while True:
        slot = slots[turn]
        if slot is None:
            if next_input < len(counts):
                slots[turn] = [next_input, 0]
                next_input += 1
                continue  # a newly opened file yields in the same turn
            if all(s is None for s in slots):
                break  # every record taken
        elif slot[1] == chunks[slot[0]]:
            slots[turn] = None  # found used up on its turn; refilled on its next one
        else:
            size = min(chunk, counts[slot[0]] - slot[1] * chunk)
            if taken + size > skip:
                break  # this chunk holds the first record to keep
            taken += size
            slot[1] += 1
        turn = (turn + 1) % cycle_length
    inputs = []
    for k in range(cycle_length):
        slot = slots[(turn + k) % cycle_length]
        if slot is not None:
            # A used-up file not yet found so: an input that yields nothing (-1), so it is not read again.
            inputs.append((slot[0], -1 if slot[1] == chunks[slot[0]] else slot[1]))
        elif next_input < len(counts):
            inputs.append((next_input, 0))
            next_input += 1
    inputs += [(i, 0) for i in range(next_input, len(counts))]
    return inputs, skip - taken


def auto_streams(global_batch: int) -> int:
    """The default number of streams: the largest divisor of the global batch up to MAX_AUTO_STREAMS.

    It depends on the global batch alone (never on the process count), and as
    a large divisor of a batch that is split over devices it is a multiple of
    any usual process count (every power of two up to 64 divides it when B does).
    """
    return max(d for d in range(1, min(global_batch, MAX_AUTO_STREAMS) + 1) if global_batch % d == 0)


def check_streams(streams: int, global_batch: int, process_count: int, num_files: int | None, where: str) -> None:
    """ConfigError/DataError naming the fix when `streams` cannot split this run's batches.

    num_files: the shard files, or None when streams may share files (each
    then shares all files, keeping its every S-th record).
    """
    if streams < 1:
        raise ConfigError(f"data.streams is {streams}; use 0 (automatic) or a divisor of the global batch")
    if global_batch % streams:
        raise ConfigError(
            f"data.streams={streams} does not divide the global batch of {global_batch}; each global batch "
            f"takes the same number of examples from every stream: use a divisor of {global_batch} "
            f"(e.g. {math.gcd(streams, global_batch)}) or 0 (automatic)"
        )
    if streams % process_count:
        raise ConfigError(
            f"{process_count} processes cannot split data.streams={streams} evenly (each process reads "
            f"whole streams); set data.streams to a multiple of {process_count} that divides the global "
            f"batch of {global_batch}, or run on a process count that divides {streams}"
        )
    if num_files is not None and streams > num_files:
        raise DataError(
            f"{where}: {num_files} shard files for data.streams={streams}; each stream reads its own files: "
            f"set data.streams to at most {num_files} (0: automatic) or re-create the data with at least "
            f"{streams} shards"
        )


class PretrainingPipeline:
    """An iterator of per-process pre-training batches: dict[str, np.ndarray] (docs/design.md).

    files: dataset directory, shard glob or comma-separated globs.
    batch_size: examples per batch on this process (global batch / process_count);
    this process's rows are rows [process_index * batch_size, (process_index + 1) * batch_size)
    of each global batch.
    streams: how many streams the data is read as (module docstring); None:
    `auto_streams`, sharing files between streams when there are fewer
    files than streams. An explicit number must not exceed the files unless
    `share_files`.
    masking: "static" (masks stored in the shards) or "dynamic" (needs `dynamic`,
    shards without masks, i.e. create-data with masking "none").
    max_seq_length, max_predictions_per_seq, vocab_sha256: what the caller expects;
    DataError when the shards differ (vocab_sha256 is checked only with metadata).
    state: a `state()` of an earlier pipeline on the same data to resume from
    (written with any process count).
    with_example_ids: add "example_id" int64 [batch] to each batch.
    cycle_length: files each stream reads at a time.
    threads: size of a private tf.data thread pool (None: TF's default, every core).
    """

    def __init__(
        self,
        files: str,
        batch_size: int,
        *,
        masking: str = "static",
        dynamic: MaskingOptions | None = None,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        streams: int | None = None,
        share_files: bool = False,
        shuffle_buffer: int = 10_000,
        prefetch: int = 2,
        num_epochs: int | None = None,
        max_seq_length: int | None = None,
        max_predictions_per_seq: int | None = None,
        vocab_sha256: str | None = None,
        state: dict | None = None,
        with_example_ids: bool = False,
        cycle_length: int = 8,
        threads: int | None = None,
    ):
        _check_arguments(batch_size, masking, dynamic, process_index, process_count, shuffle_buffer)
        self.batch_size = batch_size
        self.global_batch = batch_size * process_count
        self.masking = masking
        self.seed = int(seed)
        self.process_index, self.process_count = process_index, process_count
        self.shuffle_buffer, self.prefetch, self.num_epochs = shuffle_buffer, prefetch, num_epochs
        self.with_example_ids, self.cycle_length, self.threads = with_example_ids, cycle_length, threads
        self.shards = resolve_shards(files)
        self._check_shards(max_seq_length, max_predictions_per_seq, vocab_sha256, dynamic)
        self._masker = DynamicMasker(dynamic) if masking == "dynamic" else None
        self._spec = records.parse_spec(self._parsed_features())
        num_files = len(self.shards.paths)
        self.streams = auto_streams(self.global_batch) if streams in (None, 0) else int(streams)
        strict = streams not in (None, 0) and not share_files
        check_streams(self.streams, self.global_batch, process_count, num_files if strict else None, files)
        self.stream_batch = self.global_batch // self.streams
        self._split_by_file = num_files >= self.streams
        if not self._split_by_file:
            log.info("%s: %d files for %d streams; the streams share them (one read)", files, num_files, self.streams)
        per_process = self.streams // process_count
        self._my_streams = list(range(process_index * per_process, (process_index + 1) * per_process))
        # A finite run must end on the same global batch on every process: it needs every stream's length.
        counted = range(self.streams) if num_epochs is not None else self._my_streams
        self._record_counts = self._count_records(counted)
        self._stream_batches = {s: self._stream_examples(s) // self.stream_batch for s in counted}
        self._check_stream_lengths(files)
        self.examples_per_epoch = sum(self._stream_examples(s) for s in self._my_streams)
        self.batches_per_epoch = min(self._stream_batches[s] for s in self._my_streams)
        self._total = None if num_epochs is None else num_epochs * min(self._stream_batches.values())
        self._batches = self._start_batches(state)
        self._iterator = None

    # -- the public surface ------------------------------------------------------------------

    def __iter__(self) -> PretrainingPipeline:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iterator is None:
            self._iterator = iter(self._dataset(self._batches))
        try:
            batch = next(self._iterator)
        except tf.errors.OpError as e:
            raise self._diagnose(e) from None
        self._batches += 1
        return {k: v.numpy() for k, v in batch.items()}

    def state(self) -> dict:
        """JSON-serialisable position, equal on all processes: construct with `state=`
        (any process count) to continue with the next global batch."""
        return {
            "format": STATE_FORMAT,
            "batches": self._batches,
            "seed": self.seed,
            "streams": self.streams,
            "global_batch": self.global_batch,
        }

    # -- setup ---------------------------------------------------------------------------------

    def _check_shards(self, max_seq_length, max_predictions_per_seq, vocab_sha256, dynamic) -> None:
        shards, where = self.shards, (self.shards.metadata or {}).get("path", self.shards.paths[0])
        if shards.metadata is not None:
            records.check_metadata(
                shards.metadata,
                max_seq_length=max_seq_length,
                max_predictions_per_seq=max_predictions_per_seq if self.masking == "static" else None,
                vocab_sha256=vocab_sha256,
                vocab_size=dynamic.vocab_size if dynamic is not None else None,
            )
        elif max_seq_length is not None and shards.max_seq_length != max_seq_length:
            raise DataError(
                f"{where}: records have max_seq_length {shards.max_seq_length} but {max_seq_length} is wanted; "
                "re-create the data or change the config"
            )
        if self.masking == "static":
            if not shards.masked:
                raise DataError(
                    f"{where}: the shards hold no masks (masked_lm_*); use masking 'dynamic' "
                    "or create the data with static masking"
                )
            stored = shards.features["masked_lm_ids"]["length"]
            if max_predictions_per_seq is not None and stored != max_predictions_per_seq:
                raise DataError(
                    f"{where}: records have max_predictions_per_seq {stored} but "
                    f"{max_predictions_per_seq} is wanted; re-create the data or change the config"
                )
        elif shards.masked:
            raise DataError(
                f"{where}: the shards are already masked (masked_lm_* present, input_ids hold [MASK]); "
                "dynamic masking needs create-data with masking 'none', or use masking 'static'"
            )

    def _parsed_features(self) -> dict[str, dict]:
        wanted = records.INT_FEATURES + (records.NSP_FEATURE,)
        if self.masking == "static":
            wanted += records.MLM_FEATURES
        if self.shards.packed:
            wanted += (records.DOCUMENT_FEATURE,)
        return {name: self.shards.features[name] for name in wanted}

    def _stream_file_ids(self, stream: int) -> list[int]:
        everything = range(len(self.shards.paths))
        if self._split_by_file:
            return list(everything[stream :: self.streams])
        return list(everything)

    def _count_records(self, streams) -> dict[int, int]:
        """Records per file of `streams` (from metadata, else by reading -- not parsing -- the files)."""
        counts, wanted = self.shards.counts, sorted({f for s in streams for f in self._stream_file_ids(s)})
        return {i: counts[i] if counts else count_records(self.shards.paths[i]) for i in wanted}

    def _stream_examples(self, stream: int) -> int:
        total = sum(self._record_counts[f] for f in self._stream_file_ids(stream))
        if self._split_by_file:
            return total
        # Records s, s + S, ... of the first S * (total // S): every stream
        # gets the same number, so the streams advance in lock step over
        # epochs and are read together (`_shared_dataset`).
        return total // self.streams

    def _check_stream_lengths(self, files: str) -> None:
        for s, batches in sorted(self._stream_batches.items()):
            if batches == 0:
                raise DataError(
                    f"{files}: stream {s} of {self.streams} gets {self._stream_examples(s)} examples per epoch, "
                    f"fewer than its {self.stream_batch} of each global batch of {self.global_batch}; "
                    "use more data, a smaller batch or fewer streams (data.streams)"
                )

    def _start_batches(self, state: dict | None) -> int:
        if state is None:
            return 0
        try:
            if state["format"] == OLD_STATE_FORMAT:
                log.warning(
                    "input state from an older bert-jax (per-process streams): continuing at global batch %d "
                    "in the new, process-count-independent order",
                    int(state["batches"]),
                )
                return int(state["batches"])
            if state["format"] != STATE_FORMAT:
                raise KeyError("format")
            if state["seed"] != self.seed:
                raise ConfigError(
                    f"input state has seed {state['seed']} but the pipeline seed is {self.seed}; "
                    "resume with the seed the run started with"
                )
            if (state["streams"], state["global_batch"]) != (self.streams, self.global_batch):
                raise ConfigError(
                    f"input state was written with {state['streams']} streams and a global batch of "
                    f"{state['global_batch']}, this pipeline has {self.streams} and {self.global_batch}; the "
                    f"data position depends on both: resume with --config.data.streams={state['streams']} "
                    f"and --config.batch_size={state['global_batch']}"
                )
            return int(state["batches"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"input pipeline state {state!r} is not one this pipeline wrote ({e}); "
                "pass the dict from PretrainingPipeline.state()"
            ) from None

    # -- the tf.data graph ---------------------------------------------------------------------

    def _dataset(self, start: int) -> tf.data.Dataset:
        """This process's rows of global batches `start`, `start` + 1, ...: its streams' batches side by side."""
        if not self._split_by_file:
            dataset = self._shared_dataset(start)
        else:
            dataset = self._split_dataset(start)
        if self._total is not None:
            dataset = dataset.take(max(self._total - start, 0))
        dataset = dataset.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.threads is not None:
            options = tf.data.Options()
            options.threading.private_threadpool_size = self.threads
            options.threading.max_intra_op_parallelism = 1
            dataset = dataset.with_options(options)
        return dataset.prefetch(self.prefetch)

    def _split_dataset(self, start: int) -> tf.data.Dataset:
        """Streams with files of their own: each stream's batches, side by side."""
        per_stream = [self._stream_dataset(s, start) for s in self._my_streams]
        if len(per_stream) == 1:
            dataset = per_stream[0]
        else:
            dataset = tf.data.Dataset.zip(tuple(per_stream)).map(
                _concatenate, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        return dataset

    def _shared_dataset(self, start: int) -> tf.data.Dataset:
        """Streams that share the files, all from one read of them.

        Stream s's record j is record j * S + s of the files' (stream-independent)
        order, so S consecutive records -- a *column* -- hold the next record of
        every stream, and W consecutive columns hold window j // W of every
        stream. Each window is permuted per stream as `_window_shuffle` would,
        and b columns make a global batch: stream s's b records are column
        entry s of each. One traced graph and one pass over the files serve all
        streams (per-stream datasets would each read every file and trace their
        own functions: 40 s at 64 streams over a 65 MB shard, on 2 cores).
        """

        @tf.autograph.experimental.do_not_convert
        def epoch_batches(e, skip_columns=0):
            return self._shared_epoch_batches(e, skip_columns)

        return self._epochs_from(start, self._stream_batches[self._my_streams[0]], epoch_batches)  # equal for all

    def _epochs_from(self, start: int, batches: int, epoch_batches) -> tf.data.Dataset:
        """Batches from `start` on, `batches` an epoch: the rest of its epoch, then later
        epochs, up to num_epochs. `epoch_batches(epoch, skip)`: an epoch's
        batches after the first `skip` records of each stream."""
        epoch, in_epoch = divmod(start, batches)
        end = self.num_epochs if self.num_epochs is not None else np.iinfo(np.int64).max
        if in_epoch == 0:  # at an epoch's start: one traced function for all epochs (tracing costs ~1 s)
            return tf.data.Dataset.range(epoch, max(end, epoch)).flat_map(epoch_batches)
        first = epoch_batches(tf.constant(epoch, tf.int64), in_epoch * self.stream_batch)
        if self.num_epochs is not None and epoch >= self.num_epochs:
            first = first.take(0)
        later = tf.data.Dataset.range(epoch + 1, max(end, epoch + 1)).flat_map(epoch_batches)
        return first.concatenate(later)

    @tf.autograph.experimental.do_not_convert
    def _shared_epoch_batches(self, epoch: tf.Tensor, skip_columns: int = 0) -> tf.data.Dataset:
        """(example_id [B/P], serialized [B/P][, uniforms [B/P, 3, seq]]) of one epoch, from column `skip_columns`."""
        streams, window = self.streams, max(self.shuffle_buffer, 1)
        fold_in = tf.random.experimental.stateless_fold_in
        first_window, skip_in_window = divmod(skip_columns, window)
        records = self._read_epoch(self._stream_file_ids(0), self._key(1, epoch, -1), first_window * window * streams)
        per_stream = self._stream_examples(0)
        # Whole columns only (the epoch's last T mod S records are left out).
        columns = records.take((per_stream - first_window * window) * streams).batch(streams, drop_remainder=True)
        if self.shuffle_buffer > 1:

            @tf.autograph.experimental.do_not_convert
            def permute(window_index, window_columns):
                example_ids, serialized = window_columns  # [w, S] (w = window, or less at the epoch's end)
                length = tf.shape(example_ids)[:1]
                orders = tf.stack(
                    [
                        tf.argsort(tf.random.stateless_uniform(length, fold_in(self._key(2, epoch, s), window_index)))
                        for s in range(streams)
                    ]
                )  # [S, w]: each stream's permutation, as `_window_shuffle` draws it
                return (
                    tf.transpose(tf.gather(tf.transpose(example_ids), orders, batch_dims=1)),
                    tf.transpose(tf.gather(tf.transpose(serialized), orders, batch_dims=1)),
                )

            columns = columns.batch(window).enumerate(start=first_window)
            columns = columns.map(permute, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
        columns = columns.skip(skip_in_window)
        mine = tf.constant(self._my_streams, tf.int32)
        seq = self.shards.max_seq_length

        @tf.autograph.experimental.do_not_convert
        def to_batch(example_ids, serialized):
            # [b, S] columns -> this process's streams, stream-major: [S_p * b].
            example_ids = tf.reshape(tf.transpose(tf.gather(example_ids, mine, axis=1)), [-1])
            serialized = tf.reshape(tf.transpose(tf.gather(serialized, mine, axis=1)), [-1])
            if self._masker is None:
                return example_ids, serialized
            uniforms = tf.map_fn(
                lambda i: example_uniforms(self.seed, epoch, i, seq), example_ids, fn_output_signature=tf.float32
            )
            return example_ids, serialized, uniforms

        batched = columns.batch(self.stream_batch, drop_remainder=True)
        return batched.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _stream_dataset(self, stream: int, start: int) -> tf.data.Dataset:
        """Stream `stream`'s batches from its batch `start` on: the rest of that epoch, then later epochs."""

        @tf.autograph.experimental.do_not_convert
        def epoch_batches(e, skip_records=0):
            return self._epoch_batches(stream, e, skip_records)

        return self._epochs_from(start, self._stream_batches[stream], epoch_batches)

    # Autograph would only re-trace plain TF code, at seconds per pipeline.
    @tf.autograph.experimental.do_not_convert
    def _epoch_batches(self, stream: int, epoch: tf.Tensor, skip_records: int = 0) -> tf.data.Dataset:
        """(example_id [b], serialized [b][, uniforms [b, 3, seq]]) batches of one stream epoch."""
        dataset = self._epoch_records(stream, epoch, skip_records)
        if self._masker is not None:
            seq = self.shards.max_seq_length

            @tf.autograph.experimental.do_not_convert
            def draw(example_id, serialized):
                return example_id, serialized, example_uniforms(self.seed, epoch, example_id, seq)

            dataset = dataset.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.batch(self.stream_batch, drop_remainder=True)

    def _epoch_records(self, stream: int, epoch: tf.Tensor, skip_records: int = 0) -> tf.data.Dataset:
        """(example_id, serialized) of `stream` (its own files) in `epoch`'s shuffled order, from its
        record `skip_records` (> 0: a resume, with an eager `epoch`; whole windows skipped by `_read_epoch`)."""
        window = max(self.shuffle_buffer, 1)
        first_window, skip_in_window = divmod(skip_records, window)
        file_id_list = self._stream_file_ids(stream)
        dataset = self._read_epoch(file_id_list, self._key(1, epoch, stream), first_window * window)
        return self._window_shuffle(dataset, stream, epoch, first_window, skip_in_window)

    def _read_epoch(self, file_id_list: list[int], order_key: tf.Tensor, skip: int) -> tf.data.Dataset:
        """(example_id, serialized) of the files in an order drawn with `order_key`, after the first `skip`.

        A skip reads no file that the skipped records used up (`resume_plan`,
        which needs an eager order_key); only the files open in the
        interleave at that point are read from their start.
        """
        cycle_length = min(self.cycle_length, len(file_id_list))
        file_ids = tf.constant(file_id_list, tf.int64)
        order = tf.argsort(tf.random.stateless_uniform([len(file_id_list)], order_key))
        first_chunks = tf.zeros([len(file_id_list)], tf.int64)
        drop = 0
        if skip:
            in_order = order.numpy().tolist()
            inputs, drop = resume_plan(
                [self._record_counts[file_id_list[i]] for i in in_order], cycle_length, READ_CHUNK, skip
            )
            order = tf.constant([in_order[i] for i, _ in inputs], tf.int32, shape=[len(inputs)])
            first_chunks = tf.constant([chunk for _, chunk in inputs], tf.int64, shape=[len(inputs)])
        paths = tf.constant([self.shards.paths[i] for i in file_id_list])
        files = tf.data.Dataset.from_tensor_slices(
            (tf.gather(file_ids, order), tf.gather(paths, order), first_chunks)
        )

        @tf.autograph.experimental.do_not_convert
        def read(file_id, path, first_chunk):
            # Chunks of records, so per-element tf.data overhead (the map, the interleave) is paid per chunk.
            records_before = tf.maximum(first_chunk, 0) * READ_CHUNK
            # take(0) (a used-up file, first_chunk -1) never pulls from the file, so it is never read.
            records = (
                tf.data.TFRecordDataset(path)
                .skip(records_before)
                .take(tf.where(first_chunk < 0, tf.constant(0, tf.int64), -1))
            )
            chunks = records.batch(READ_CHUNK).enumerate()
            return chunks.map(
                tf.autograph.experimental.do_not_convert(
                    lambda chunk, serialized: (
                        tf.bitwise.left_shift(file_id, ID_SHIFT)
                        + records_before
                        + chunk * READ_CHUNK
                        + tf.range(tf.shape(serialized, out_type=tf.int64)[0]),
                        serialized,
                    )
                )
            )

        dataset = files.interleave(
            read,
            cycle_length=cycle_length,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).unbatch()
        if drop:
            dataset = dataset.skip(drop)
        return dataset

    def _window_shuffle(
        self, dataset: tf.data.Dataset, stream: int, epoch: tf.Tensor, first_window: int, skip_in_window: int
    ) -> tf.data.Dataset:
        """Permute each window of `shuffle_buffer` records with a stateless seed from (seed, stream, epoch, window).

        `dataset` starts at window `first_window`; `skip_in_window` records of
        it are dropped after the permutation. Unlike Dataset.shuffle, the
        order depends on no TF global seed, so it is a pure function of the
        arguments.
        """
        if self.shuffle_buffer <= 1:
            return dataset.skip(skip_in_window)

        @tf.autograph.experimental.do_not_convert
        def permute(window, records_of_window):
            example_ids, serialized = records_of_window
            key = tf.random.experimental.stateless_fold_in(self._key(2, epoch, stream), window)
            order = tf.argsort(tf.random.stateless_uniform(tf.shape(example_ids), key))
            return tf.gather(example_ids, order), tf.gather(serialized, order)

        windows = dataset.batch(self.shuffle_buffer).enumerate(start=first_window)
        windows = windows.map(permute, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return windows.unbatch().skip(skip_in_window)

    def _key(self, purpose: int, epoch: tf.Tensor, stream: int) -> tf.Tensor:
        key = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, purpose], tf.int64), epoch)
        return tf.random.experimental.stateless_fold_in(key, stream)

    @tf.autograph.experimental.do_not_convert
    def _decode(self, example_ids, serialized, uniforms=None) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized, self._spec)
        batch = {k: tf.cast(v, tf.int32) for k, v in parsed.items() if k in INT32_KEYS}
        batch[records.NSP_FEATURE] = tf.cast(parsed[records.NSP_FEATURE][:, 0], tf.int32)
        if "masked_lm_weights" in parsed:
            batch["masked_lm_weights"] = tf.cast(parsed["masked_lm_weights"], tf.float32)
        if self._masker is not None:
            batch.update(self._masker(batch["input_ids"], batch["input_mask"], uniforms))
        if self.with_example_ids:
            batch["example_id"] = example_ids
        return batch

    # -- errors --------------------------------------------------------------------------------

    def _diagnose(self, error: tf.errors.OpError) -> DataError:
        """Find the file and record behind a tf.data failure (reads this process's shards again)."""
        mine = sorted({f for s in self._my_streams for f in self._stream_file_ids(s)})
        for file_id in mine:
            path = self.shards.paths[file_id]
            for index, record in enumerate(records.iter_records(path)):  # raises for unreadable records
                try:
                    tf.io.parse_single_example(record, self._spec)
                except tf.errors.InvalidArgumentError as e:
                    return DataError(
                        f"{path}: record {index} does not match the expected features "
                        f"{_lengths(self._parsed_features())} ({_first_line(e)}); re-create the shard"
                    )
        return DataError(f"{', '.join(self.shards.paths[:3])}...: reading failed ({_first_line(error)})")


@tf.autograph.experimental.do_not_convert
def _concatenate(*stream_batches):
    """One process's rows of a global batch: its streams' batches, in stream order."""
    return tuple(tf.concat(parts, 0) for parts in zip(*stream_batches, strict=True))


def _lengths(features: dict[str, dict]) -> str:
    return ", ".join(f"{name}[{spec['length']}]" for name, spec in features.items())


def _check_arguments(batch_size, masking, dynamic, process_index, process_count, shuffle_buffer) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size}; use at least 1 example per process")
    if masking not in ("static", "dynamic"):
        raise ConfigError(f"masking is {masking!r}; use 'static' or 'dynamic'")
    if masking == "dynamic" and dynamic is None:
        raise ConfigError(
            "masking 'dynamic' needs MaskingOptions (MaskingOptions.from_tokens(load_vocab(vocab_file)))"
        )
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process_index {process_index} is not in [0, process_count={process_count})")
    if shuffle_buffer < 0:
        raise ConfigError(f"shuffle_buffer is {shuffle_buffer}; use 0 (no shuffle) or more")


# -- benchmark (docs/input_pipeline.md) ----------------------------------------------------------


def write_random_shards(
    directory: str,
    *,
    num_files: int,
    records_per_file: int,
    max_seq_length: int,
    max_predictions_per_seq: int,
    masking: str,
    vocab_size: int = 30522,
    seed: int = 0,
) -> None:
    """Shards of random token ids (all positions real) + metadata.json, for benchmarks."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    encoder = records.ExampleEncoder(masking)
    shards = []
    for f in range(num_files):
        name = f"random-{f:05d}-of-{num_files:05d}.tfrecord"
        writer = records.ShardWriter(os.path.join(directory, name))
        for _ in range(records_per_file):
            ids = rng.integers(1000, vocab_size, max_seq_length).tolist()
            ints = [ids, [1] * max_seq_length, [0] * max_seq_length]
            weights = None
            if masking != "none":
                ints += [sorted(rng.choice(max_seq_length, max_predictions_per_seq, replace=False).tolist())]
                ints += [rng.integers(1000, vocab_size, max_predictions_per_seq).tolist()]
                weights = [1.0] * max_predictions_per_seq
            writer.write(encoder.encode(ints, weights, int(rng.integers(2))))
        writer.commit()
        shards.append({"file": name, "instances": records_per_file})
    settings = {
        "max_seq_length": max_seq_length,
        "max_predictions_per_seq": max_predictions_per_seq,
        "masking": masking,
    }
    records.write_metadata(
        directory,
        {
            "format": records.FORMAT,
            "vocab": {"file": "", "sha256": "", "size": vocab_size, "do_lower_case": True},
            "settings": settings,
            "features": records.feature_lengths(max_seq_length, max_predictions_per_seq, masking),
            "counts": {"instances": num_files * records_per_file},
            "shards": shards,
        },
    )


def benchmark(pipeline: PretrainingPipeline, *, warmup_batches: int = 20, seconds: float = 10.0) -> dict:
    """Examples/s of `pipeline` after warm-up, and examples/s per core it may use.

    Cores: `pipeline.threads` when set (a private pool, one op thread), else this process's CPUs.
    """
    for _ in range(warmup_batches):
        next(pipeline)
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(pipeline)
        batches += 1
    elapsed = time.perf_counter() - start
    cores = pipeline.threads or len(os.sched_getaffinity(0))
    rate = batches * pipeline.batch_size / elapsed
    return {"examples_per_s": rate, "cores": cores, "examples_per_s_per_core": rate / cores}


def synthetic_masking_options(
    vocab_size: int, max_predictions_per_seq: int, whole_word: bool
) -> MaskingOptions:
    """MaskingOptions for `write_random_shards` data: ids 0..4 special, every 4th id a "##" piece."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"##t{i}" if i % 4 == 0 else f"t{i}" for i in range(len(tokens), vocab_size)]
    return MaskingOptions.from_tokens(
        tokens, max_predictions_per_seq=max_predictions_per_seq, whole_word_mask=whole_word
    )
