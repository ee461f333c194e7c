"""create-data as an Apache Beam pipeline: the same records, shards and metadata.json as the local path.

`create_pretraining_data_beam(options, input_spec, output, pipeline_args)`
runs on any Beam runner (DirectRunner, Dataflow, Flink, Spark; chosen by
`pipeline_args`, Beam's own flags) and writes what
`create_data.create_pretraining_data` writes: the same shard names, block `i`
in shard `i mod num_shards`, the same set of records in every shard (their
order within a shard is Beam's), and the same metadata.json. The pipeline:

1. read: one element per input file (or one for a `tfds:` / `builtin:` spec),
   each read by the local reader (`corpus.iter_raw_documents`) into raw
   documents keyed (file index, document index), plus the file's list of
   document sizes in characters;
2. layout: the sizes of all files, in corpus order, cut into blocks by the
   local rule (`create_data.iter_blocks`): one small list of block starts
   (one int per block; the only step that sees the whole corpus, as ints);
3. group: each document goes to its block (`GroupByKey`), sorted back into
   corpus order;
4. make: `create_data.BlockProcessor`, the local path's per-block function
   (segment, tokenize, instances of all dupes, masks, serialize);
5. write: one `WriteToTFRecord` per shard (Beam's file sink: temporary
   files, renamed when the bundle's output is final, so a failed or retried
   bundle never leaves a partial shard under a final name); then
   metadata.json, once every shard is in place, from the combined counts.

apache_beam is imported here only; importing this module without it raises a
one-line UserError naming the extra to install.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import operator
import os
import posixpath
import shlex
import shutil
import tempfile
import time
import types
from collections.abc import Iterator

import numpy as np

from bert_jax.data import corpus, create_data, records
from bert_jax.errors import DataError, UserError
from bert_jax.tokenization import load_tokenizer

try:
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as e:
    raise UserError(
        f"--runner=beam needs Apache Beam, which is not installed ({e}); install it with: pip install -e .[beam]"
    ) from None

_SIZES = "sizes"
_SUMMARY = "summary"
# Vocab files ride to the workers inside the job graph (a distributed runner's workers cannot read the
# launcher's disk; Dataflow caps a job graph at 10 MB): model weights and larger files stay behind.
_MAX_SHIPPED_FILE = 8 << 20
_NOT_SHIPPED = (".safetensors", ".bin", ".msgpack", ".h5", ".pt", ".onnx", ".index", ".ckpt")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One element of the read step: `index` orders the corpus; `kind` is "local", "remote" or "spec"."""

    index: int
    source: str  # a file path (local or with a scheme, e.g. gs://) or a whole tfds:/builtin: spec
    key: str  # the file's document key (its path relative to its glob's fixed directory)
    kind: str


def is_remote(path: str) -> bool:
    """A path on a filesystem Beam reaches by scheme (gs://, hdfs://, s3://...)."""
    return "://" in path


# ---- input ----


def input_units(spec: str) -> list[Unit]:
    """The read step's elements for `spec`, in corpus order; DataError for a glob that matches nothing."""
    if spec.startswith(("tfds:", "builtin:")):
        return [Unit(0, spec, "", "spec")]
    if not any(is_remote(p) for p in spec.split(",")):
        return [Unit(i, path, key, "local") for i, (path, key) in enumerate(corpus._files_and_keys(spec))]
    found: list[tuple[str, str]] = []
    for pattern in (p.strip() for p in spec.split(",")):
        if pattern:
            found += _remote_files_and_keys(pattern)
    return [Unit(i, path, key, "remote" if is_remote(path) else "local") for i, (path, key) in enumerate(found)]


def _remote_files_and_keys(pattern: str) -> list[tuple[str, str]]:
    """(path, key) of a remote glob's matches, sorted; a pattern without wildcards may name a directory."""
    if not is_remote(pattern):
        return corpus._files_and_keys(pattern)
    root = corpus._glob_root(pattern)
    paths = _match(pattern)
    if not paths and not any(c in pattern for c in "*?["):
        root = pattern.rstrip("/")
        paths = _match(root + "/*")
    if not paths:
        raise DataError(f"input {pattern!r} matches no file; check the path or quote the glob")
    return [(path, posixpath.relpath(path.split("://", 1)[1], root.split("://", 1)[1])) for path in sorted(paths)]


def _match(pattern: str) -> list[str]:
    try:
        result = FileSystems.match([pattern])[0]
    except ValueError as e:  # no filesystem for the scheme (e.g. gs:// without apache-beam[gcp])
        raise UserError(f"input {pattern!r}: {str(e).splitlines()[0]}; install the Beam extra for it") from None
    except Exception as e:  # BeamIOError and the like, for an unreachable bucket or no match
        if "No files found" in str(e) or "not found" in str(e).lower():
            return []
        raise DataError(f"input {pattern!r} cannot be listed ({str(e).splitlines()[0]})") from None
    return [m.path for m in result.metadata_list if m.size_in_bytes > 0 or not m.path.endswith("/")]


@contextlib.contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """A remote file copied, bytes as they are (.gz stays compressed), to a local temporary file of the same name."""
    directory = tempfile.mkdtemp(prefix="bert-jax-beam-")
    local = os.path.join(directory, posixpath.basename(path))
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield local
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def unit_documents(unit: Unit, input_format: str, stats: corpus.CorpusStats, tfds_data_dir: str | None):
    """Raw documents of one unit, keyed exactly as the local reader keys them over the whole spec."""
    if unit.kind == "spec":
        yield from corpus.iter_raw_documents(unit.source, input_format, stats, tfds_data_dir)
        return
    with contextlib.ExitStack() as stack:
        path = stack.enter_context(_local_copy(unit.source)) if unit.kind == "remote" else unit.source
        base = os.path.basename(path)
        # A one-file spec keys its documents by the file's base name; the glob's key replaces it.
        for raw in corpus.iter_raw_documents(glob.escape(path), input_format, stats):
            yield raw._replace(key=unit.key + raw.key[len(base) :])
        if unit.kind == "remote":
            stats.first_seen = {r: w.replace(path, unit.source) for r, w in stats.first_seen.items()}


# ---- layout: documents -> blocks ----


def block_layout(unit_sizes: list[tuple[int, list[int]]], block_size: int, block_chars: int) -> tuple[dict, np.ndarray]:
    """({unit index: ordinal of its first document}, int64 [blocks] ordinal of each block's first document).

    unit_sizes: (unit index, characters of each of its documents) in any order.
    """
    offsets, chars, ordinal = {}, [], 0
    for unit, sizes in sorted(unit_sizes, key=operator.itemgetter(0)):
        offsets[unit] = ordinal
        ordinal += len(sizes)
        chars += sizes
    starts, first = [], 0
    for block in create_data.iter_blocks(chars, block_size, block_chars, chars_of=int):
        starts.append(first)
        first += len(block)
    return offsets, np.array(starts, np.int64)


def assign_block(item, layout) -> tuple[int, tuple[int, corpus.RawDocument]]:
    """((unit, document index), raw) -> (block index, (corpus ordinal, raw))."""
    (unit, index), raw = item
    offsets, starts = layout
    ordinal = offsets[unit] + index
    return int(np.searchsorted(starts, ordinal, side="right") - 1), (ordinal, raw)


# ---- workers ----


def vocab_payload(vocab_file: str) -> tuple[str, dict[str, bytes]]:
    """(name to load on the worker, {file name: bytes}): the vocab file (and merges.txt beside a vocab.json),
    or a tokenizer folder's files but weights and files over 8 MiB."""
    if os.path.isdir(vocab_file):
        names = sorted(n for n in os.listdir(vocab_file) if os.path.isfile(os.path.join(vocab_file, n)))
        names = [
            n
            for n in names
            if os.path.getsize(os.path.join(vocab_file, n)) <= _MAX_SHIPPED_FILE and not n.endswith(_NOT_SHIPPED)
        ]
        return "", {n: _read_bytes(os.path.join(vocab_file, n)) for n in names}
    folder, name = os.path.split(vocab_file)
    files = {name: _read_bytes(vocab_file)}
    if name.endswith(".json") and os.path.isfile(os.path.join(folder, "merges.txt")):
        files["merges.txt"] = _read_bytes(os.path.join(folder, "merges.txt"))
    return name, files


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _worker_options(options: create_data.CreateDataOptions, vocab: tuple[str, dict[str, bytes]]):
    """`options` with the vocab written to a local temporary folder of this worker."""
    name, files = vocab
    folder = tempfile.mkdtemp(prefix="bert-jax-vocab-")
    for file_name, data in files.items():
        with open(os.path.join(folder, file_name), "wb") as f:
            f.write(data)
    return dataclasses.replace(options, vocab_file=os.path.join(folder, name) if name else folder, num_workers=1)


class _ReadUnit(beam.DoFn):
    """Unit -> ((unit, document index), RawDocument)...; tagged SIZES: (unit, [chars per document], stats)."""

    def __init__(self, input_format: str, tfds_data_dir: str | None):
        self.input_format = input_format
        self.tfds_data_dir = tfds_data_dir

    def process(self, unit: Unit):
        stats, sizes = corpus.CorpusStats(), []
        for index, raw in enumerate(unit_documents(unit, self.input_format, stats, self.tfds_data_dir)):
            sizes.append(create_data.document_chars(raw))
            yield (unit.index, index), raw
        yield beam.pvalue.TaggedOutput(_SIZES, (unit.index, sizes, stats))


class _MakeRecords(beam.DoFn):
    """(block index, [(ordinal, raw)...]) -> (shard, record)...; tagged SUMMARY: (block index, counts)."""

    def __init__(self, options: create_data.CreateDataOptions, vocab: tuple[str, dict[str, bytes]], num_shards: int):
        self.options = options
        self.vocab = vocab
        self.num_shards = num_shards
        self._processor: create_data.BlockProcessor | None = None

    def setup(self):
        self._processor = create_data.BlockProcessor(_worker_options(self.options, self.vocab))

    def process(self, element):
        block_index, documents = element
        block = [raw for _, raw in sorted(documents, key=operator.itemgetter(0))]
        result = self._processor(block)
        shard = block_index % self.num_shards
        for record in result.records:
            yield shard, record
        yield beam.pvalue.TaggedOutput(_SUMMARY, (block_index, dataclasses.replace(result, records=[])))


# ---- counts ----


def _add_corpus_stats(total: corpus.CorpusStats, part: corpus.CorpusStats) -> corpus.CorpusStats:
    total.files += part.files
    total.documents += part.documents
    total.sentences += part.sentences
    total.characters += part.characters
    for reason, count in part.skipped.items():
        total.note(reason, part.first_seen.get(reason, ""), count)
    return total


def _add_totals(total: create_data._Totals, part) -> create_data._Totals:
    total.add(part)  # a BlockResult or another _Totals: the same fields
    return total


class _OrderedSum(beam.CombineFn):
    """Sums (order, counts) in any order, keeping for each skip reason the place seen at the lowest order
    (what the local path, reading in order, reports as `first_seen`)."""

    def __init__(self, new, add, stats_of):
        self.new, self.add, self.stats_of = new, add, stats_of

    def create_accumulator(self):
        return self.new(), {}

    def add_input(self, accumulator, item):
        total, first = accumulator
        order, part = item
        self.add(total, part)
        for reason, where in self.stats_of(part).first_seen.items():
            if reason not in first or order < first[reason][0]:
                first[reason] = (order, where)
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = list(accumulators)
        total, first = accumulators[0]
        for other, other_first in accumulators[1:]:
            self.add(total, other)
            for reason, (order, where) in other_first.items():
                if reason not in first or order < first[reason][0]:
                    first[reason] = (order, where)
        return total, first

    def extract_output(self, accumulator):
        total, first = accumulator
        self.stats_of(total).first_seen = {reason: where for reason, (_, where) in first.items()}
        return total


def _totals_of(result):
    return result.stats


def _new_totals(max_seq_length: int) -> create_data._Totals:
    return create_data._Totals(stats=corpus.CorpusStats(), lengths=np.zeros(max_seq_length + 1, np.int64))


def _identity(value):
    return value


class _WriteMetadata(beam.DoFn):
    """Writes metadata.json from the combined counts once every shard is written (the `written` side input)."""

    def __init__(self, options, input_spec: str, vocab_info: dict, paths: list[str]):
        self.options, self.input_spec, self.vocab_info, self.paths = options, input_spec, vocab_info, paths

    def process(self, totals, reader_stats, shard_counts, written):
        del written  # only orders this step after the shard sinks
        if totals.instances == 0:
            return  # no dataset: the launcher reports it; no metadata.json makes the empty shards look complete
        writers = [types.SimpleNamespace(path=p, count=shard_counts.get(i, 0)) for i, p in enumerate(self.paths)]
        tokenizer = types.SimpleNamespace(**self.vocab_info)
        metadata = create_data._metadata(
            self.options, self.input_spec, tokenizer, self.paths, writers, totals, reader_stats
        )
        yield write_metadata(_directory(self.paths), metadata)


def write_metadata(directory: str, metadata: dict) -> str:
    """records.write_metadata locally; elsewhere the same JSON through Beam's filesystem (a GCS object
    appears complete or not at all)."""
    if not is_remote(directory):
        return records.write_metadata(directory, metadata)
    path = FileSystems.join(directory, records.METADATA_FILE)
    with FileSystems.create(path, mime_type="application/json") as f:
        f.write((json.dumps(metadata, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path


# ---- the pipeline ----


def output_paths(output: str, num_shards: int) -> list[str]:
    """`create_data.shard_paths`, also for a remote output (gs://bucket/dir, gs://bucket/dir/train@16)."""
    if not is_remote(output):
        return create_data.shard_paths(output, num_shards)
    scheme, rest = output.split("://", 1)
    return [f"{scheme}://{p}" for p in create_data.shard_paths(rest, num_shards)]


def _directory(paths: list[str]) -> str:
    return posixpath.dirname(paths[0]) if is_remote(paths[0]) else os.path.dirname(os.path.abspath(paths[0]))


def build_pipeline(
    pipeline, options: create_data.CreateDataOptions, input_spec: str, units: list[Unit], paths: list[str]
) -> None:
    """Adds create-data's transforms to `pipeline` (see the module docstring)."""
    tokenizer = load_tokenizer(options.vocab_file, lower_case=options.do_lower_case)
    vocab_info = {"vocab_sha256": tokenizer.vocab_sha256, "vocab_size": tokenizer.vocab_size}
    read = (
        pipeline
        | "Units" >> beam.Create(units, reshuffle=True)
        | "Read" >> beam.ParDo(_ReadUnit(options.input_format, options.tfds_data_dir)).with_outputs(_SIZES, main="docs")
    )
    layout = (
        read[_SIZES]
        | "UnitSizes" >> beam.Map(lambda item: (item[0], item[1]))
        | "AllSizes" >> beam.combiners.ToList()
        | "Layout" >> beam.Map(block_layout, options.block_size, options.block_chars)
    )
    reader_stats = (
        read[_SIZES]
        | "UnitStats" >> beam.Map(lambda item: (item[0], item[2]))
        | "ReaderStats" >> beam.CombineGlobally(_OrderedSum(corpus.CorpusStats, _add_corpus_stats, _identity))
    )
    made = (
        read["docs"]
        | "AssignBlock" >> beam.Map(assign_block, beam.pvalue.AsSingleton(layout))
        | "GroupBlocks" >> beam.GroupByKey()
        | "MakeRecords"
        >> beam.ParDo(_MakeRecords(options, vocab_payload(options.vocab_file), len(paths))).with_outputs(
            _SUMMARY, main="records"
        )
    )
    shards = made["records"] | "ByShard" >> beam.Partition(lambda item, n: item[0], len(paths))
    written = [
        shard
        | f"Record{i}" >> beam.Map(operator.itemgetter(1))
        | f"Write{i}"
        >> beam.io.WriteToTFRecord(
            path, shard_name_template="", num_shards=1, compression_type=CompressionTypes.UNCOMPRESSED
        )
        for i, (shard, path) in enumerate(zip(shards, paths, strict=True))
    ]
    all_written = written | "Written" >> beam.Flatten()
    summaries = made[_SUMMARY]
    shard_counts = (
        summaries
        | "ShardInstances" >> beam.Map(lambda item, n: (item[0] % n, item[1].instances), len(paths))
        | "SumShards" >> beam.CombinePerKey(sum)
    )
    totals = summaries | "Totals" >> beam.CombineGlobally(
        _OrderedSum(lambda: _new_totals(options.max_seq_length), _add_totals, _totals_of)
    )
    _ = totals | "Metadata" >> beam.ParDo(
        _WriteMetadata(options, input_spec, vocab_info, paths),
        beam.pvalue.AsSingleton(reader_stats),
        beam.pvalue.AsDict(shard_counts),
        beam.pvalue.AsList(all_written),
    )


def _read_metadata(directory: str) -> dict | None:
    path = FileSystems.join(directory, records.METADATA_FILE) if is_remote(directory) else os.path.join(
        directory, records.METADATA_FILE
    )
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode("utf-8"))


def _remove_stale_metadata(directory: str) -> None:
    path = FileSystems.join(directory, records.METADATA_FILE) if is_remote(directory) else os.path.join(
        directory, records.METADATA_FILE
    )
    if FileSystems.exists(path):
        FileSystems.delete([path])  # the shards are about to change; an old description must not outlive them


def _user_error_in(error: BaseException) -> UserError | None:
    """A UserError raised on a worker, if the runner handed it back (maybe wrapped)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def create_pretraining_data_beam(
    options: create_data.CreateDataOptions, input_spec: str, output: str, pipeline_args: list[str] | str
) -> dict:
    """`create_data.create_pretraining_data` as a Beam pipeline, run to completion on the runner
    `pipeline_args` names (Beam's flags, a list or one shell-quoted string; DirectRunner by default).

    Returns metadata.json's content plus "elapsed_s" (the pipeline's wall time, seconds) and
    "instances_per_s". Raises UserError subclasses for bad settings, a glob matching nothing, a
    bad vocab and a corpus that gives no instance.
    """
    options.validate()
    args = shlex.split(pipeline_args) if isinstance(pipeline_args, str) else list(pipeline_args)
    paths = output_paths(output, options.num_shards)
    directory = _directory(paths)
    units = input_units(input_spec)
    if not is_remote(directory):
        os.makedirs(directory, exist_ok=True)
    _remove_stale_metadata(directory)
    pipeline = beam.Pipeline(options=PipelineOptions(args or ["--runner=DirectRunner"]))
    build_pipeline(pipeline, options, input_spec, units, paths)
    start = time.monotonic()
    try:
        state = pipeline.run().wait_until_finish()
    except Exception as e:
        found = _user_error_in(e)
        if found is not None:
            raise found from None
        raise
    elapsed = time.monotonic() - start
    if state is not None and str(state) not in ("DONE", "PipelineState.DONE"):
        raise DataError(f"create-data pipeline ended in state {state}; see the runner's log")
    metadata = _read_metadata(directory)
    if metadata is None:
        raise DataError(f"input {input_spec!r} gave no instance ({len(units)} files); check the path, format and vocab")
    instances = metadata["counts"]["instances"]
    return {**metadata, "elapsed_s": elapsed, "instances_per_s": instances / max(elapsed, 1e-9)}
