"""Pre-training TFRecord shards and their `metadata.json`.

Records are `tf.train.Example`s with the original BERT feature names and
types, so shards from google-research/bert's `create_pretraining_data.py`
read too:

| feature | type | length |
|---|---|---|
| input_ids, input_mask, segment_ids | int64 | max_seq_length |
| masked_lm_positions, masked_lm_ids | int64 | max_predictions_per_seq |
| masked_lm_weights | float | max_predictions_per_seq |
| next_sentence_labels | int64 | 1 |

With `masking == "none"` (masks drawn later, in tf.data) the three
`masked_lm_*` features are absent.

`metadata.json` (beside the shards; `FORMAT` names this layout):

    {"format": "bert-jax-pretraining/1",
     "input": "<corpus spec>",
     "vocab": {"file": str, "sha256": str, "size": int, "do_lower_case": bool},
     "settings": {"max_seq_length": int, "max_predictions_per_seq": int, "masked_lm_prob": float,
                  "random_seed": int, "dupe_factor": int, "short_seq_prob": float,
                  "do_whole_word_mask": bool, "mode": "nsp"|"sop"|"mlm_packed"|"packed",
                  "masking": "static"|"none", "block_size": int, "num_shards": int, ...},
     "features": {name: {"dtype": "int64"|"float32", "length": int}},
     "counts": {"documents": int, "sentences": int, "instances": int, "tokens": int,
                "skipped": {reason: int}, ...},
     "shards": [{"file": "<name relative to the metadata's directory>", "instances": int}]}

Shards are written under a temporary name and renamed when complete, so a
crash never leaves a truncated file under a shard's name. Writing needs no
TensorFlow (`ShardWriter` frames the records itself); reading and parsing
import it when first called.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

import google_crc32c
import numpy as np

from bert_jax import atomic
from bert_jax.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

FORMAT = "bert-jax-pretraining/1"
METADATA_FILE = "metadata.json"
INT_FEATURES = ("input_ids", "input_mask", "segment_ids")
MLM_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
NSP_FEATURE = "next_sentence_labels"
# Packed rows (create-data mode "packed"): 1, 2, ... per document of the row, 0 on the padding.
DOCUMENT_FEATURE = "document_ids"
TEMP_MARK = ".tmp-"


def feature_lengths(
    max_seq_length: int, max_predictions_per_seq: int, masking: str, packed: bool = False
) -> dict[str, dict]:
    """{feature: {"dtype", "length"}} of a record; masked_lm_* only with static masking,
    document_ids only in packed rows."""
    features = {name: {"dtype": "int64", "length": max_seq_length} for name in INT_FEATURES}
    if packed:
        features[DOCUMENT_FEATURE] = {"dtype": "int64", "length": max_seq_length}
    if masking != "none":
        features["masked_lm_positions"] = {"dtype": "int64", "length": max_predictions_per_seq}
        features["masked_lm_ids"] = {"dtype": "int64", "length": max_predictions_per_seq}
        features["masked_lm_weights"] = {"dtype": "float32", "length": max_predictions_per_seq}
    features[NSP_FEATURE] = {"dtype": "int64", "length": 1}
    return features


def parse_spec(features: dict[str, dict]) -> dict[str, tf.io.FixedLenFeature]:
    """`tf.io.parse_example` spec for the `features` of a metadata (or `feature_lengths`)."""
    import tensorflow as tf

    dtypes = {"int64": tf.int64, "float32": tf.float32}
    return {k: tf.io.FixedLenFeature([v["length"]], dtypes[v["dtype"]]) for k, v in features.items()}


class ExampleEncoder:
    """Serializes one instance at a time into a reused `tf.train.Example` (for a few records;
    `ExampleSerializer` does batches faster, to the same bytes)."""

    def __init__(self, masking: str):
        import tensorflow as tf

        self._example = tf.train.Example()
        feature = self._example.features.feature
        names = INT_FEATURES + (MLM_FEATURES[:2] if masking != "none" else ())
        self._ints = [feature[name].int64_list.value for name in names]
        self._weights = feature["masked_lm_weights"].float_list.value if masking != "none" else None
        self._label = feature[NSP_FEATURE].int64_list.value

    def encode(self, ints: list[list[int]], weights: list[float] | None, label: int) -> bytes:
        """`ints`: the padded int features in order input_ids, input_mask, segment_ids
        [, masked_lm_positions, masked_lm_ids] as Python lists; `weights` float list or None."""
        for field, values in zip(self._ints, ints, strict=True):
            field[:] = values
        if self._weights is not None:
            self._weights[:] = weights
        self._label[:] = [label]
        return self._example.SerializeToString(deterministic=True)  # sorted map keys: same bytes in every process


# A piece of a serialized batch: bytes uint8 [n, w], which of them are real (bool [n, w];
# None: all), and the real bytes per row (int64 [n]).
_Piece = tuple[np.ndarray, "np.ndarray | None", np.ndarray]


def _varints(values: np.ndarray) -> _Piece:
    """Protobuf base-128 varints of ints [n, k], each row's concatenated.

    Value j of row i takes the real bytes of columns j*w .. j*w+w-1 (w: the
    widest varint needed). A negative int64 takes 10 bytes, as protobuf writes it.
    """
    n = values.shape[0]
    if values.size and values.min() < 0:
        values = values.astype(np.int64).astype(np.uint64)
    top = int(values.max(initial=0))
    if top < 0x80:  # one byte each (0/1 masks, labels, small ids): the bytes are the values
        data = values.astype(np.uint8).reshape(n, -1)
        return data, None, np.full(n, data.shape[1], np.int64)
    values = values.astype(np.uint64 if top >= 1 << 62 else np.int64)
    kind = values.dtype.type
    width = (top.bit_length() + 6) // 7
    groups = np.stack([(values >> kind(7 * k)) & kind(0x7F) for k in range(width)], -1)
    size = np.ones(values.shape, np.int64)
    for k in range(1, width):
        size += values >= (kind(1) << kind(7 * k))
    column = np.arange(width)
    more = column < (size - 1)[..., None]  # the continuation bit, on all but a varint's last byte
    data = groups.astype(np.uint8) | (more.astype(np.uint8) << 7)
    return data.reshape(n, -1), (column < size[..., None]).reshape(n, -1), size.sum(axis=1)


def _dense(data: np.ndarray) -> _Piece:
    return data, None, np.full(data.shape[0], data.shape[1], np.int64)


class ExampleSerializer:
    """Serializes a batch of instances to `tf.train.Example` bytes with NumPy (no TensorFlow).

    Writes the wire format directly: Example{features: Features{feature: map
    entries in sorted key order {key, value: Feature{int64_list | float_list:
    packed values}}}}, byte-identical to
    `Example.SerializeToString(deterministic=True)` (tested). Every length
    prefix is computed for all rows at once.
    """

    def __init__(self, features: dict[str, dict]):
        self.names = sorted(features)
        self.features = features

    @staticmethod
    def _message(field_tag: int, parts: list[_Piece]) -> list[_Piece]:
        """`parts` (a message body) as the length-delimited field `field_tag`: tag, length, body."""
        length = sum(size for _, _, size in parts)
        tag = np.full((len(length), 1), field_tag, np.uint8)
        return [_dense(tag), _varints(length[:, None]), *parts]

    def _feature_entry(self, name: str, values: np.ndarray) -> list[_Piece]:
        n = values.shape[0]
        if self.features[name]["dtype"] == "float32":
            payload = np.ascontiguousarray(values, "<f4").view(np.uint8).reshape(n, -1)
            value_list = self._message(0x0A, [_dense(payload)])  # FloatList.value = 1, packed
            feature = self._message(0x12, value_list)  # Feature.float_list = 2
        else:
            value_list = self._message(0x0A, [_varints(values)])  # Int64List.value = 1, packed
            feature = self._message(0x1A, value_list)  # Feature.int64_list = 3
        key = np.frombuffer(name.encode("utf-8"), np.uint8)
        key_field = self._message(0x0A, [_dense(np.broadcast_to(key, (n, len(key))))])  # entry key = 1
        return self._message(0x0A, key_field + self._message(0x12, feature))  # Features.feature = 1

    def serialize(self, batch: dict[str, np.ndarray]) -> list[bytes]:
        """batch: {feature: array [n, length]} -> n serialized Examples."""
        entries = [part for name in self.names for part in self._feature_entry(name, batch[name])]
        example = self._message(0x0A, entries)  # Example.features = 1
        data = np.concatenate([d for d, _, _ in example], axis=1)
        real = np.concatenate([np.ones(d.shape, bool) if v is None else v for d, v, _ in example], axis=1)
        flat = data[real].tobytes()
        ends = np.cumsum(sum(size for _, _, size in example)).tolist()
        return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _temp_beside(path: str) -> str:
    """A new empty file beside `path` named PATH.tmp-XXXX, with the permissions a plain open() would give."""
    return atomic.temp_beside(path, TEMP_MARK)


def atomic_output(path: str) -> contextlib.AbstractContextManager[str]:
    """`bert_jax.atomic.atomic_path` with the TEMP_MARK the shard readers skip: a temporary
    path beside `path`, renamed to `path` when the block ends without error, removed otherwise."""
    return atomic.atomic_path(path, TEMP_MARK)


_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_CRC_MASK_DELTA = 0xA282EAD8


def _masked_crc32c(data: bytes) -> bytes:
    """TFRecord's checksum of `data`: CRC-32C rotated right by 15 bits plus a constant, 4 bytes little-endian."""
    crc = google_crc32c.value(data)
    return _CRC.pack((((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF)


def tfrecord_frame(record: bytes) -> bytes:
    """One record as a TFRecord file holds it (the bytes `tf.io.TFRecordWriter` writes, uncompressed):
    length (uint64 LE), the length's masked CRC-32C, the record, the record's masked CRC-32C."""
    length = _LENGTH.pack(len(record))
    return b"".join((length, _masked_crc32c(length), record, _masked_crc32c(record)))


class ShardWriter:
    """A TFRecord file (uncompressed, local) written under a temporary name; `commit()` renames it,
    `abort()` deletes it. No TensorFlow: the framing is `tfrecord_frame`'s."""

    def __init__(self, path: str):
        self.path = path
        self.count = 0
        self._temp = _temp_beside(path)
        self._writer = open(self._temp, "wb", buffering=1 << 20)  # noqa: SIM115 (closed by commit/abort)

    def write(self, record: bytes) -> None:
        self._writer.write(tfrecord_frame(record))
        self.count += 1

    def commit(self) -> None:
        self._writer.close()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            os.remove(self._temp)


def write_metadata(directory: str, metadata: dict) -> str:
    """Write `metadata.json` into `directory` atomically; returns its path."""
    path = os.path.join(directory, METADATA_FILE)
    with atomic_output(path) as temp, open(temp, "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def metadata_path(dir_or_pattern: str) -> str:
    """The metadata.json for a dataset directory, a shard file or a shard glob (the directory of its first match)."""
    first = dir_or_pattern.split(",")[0].strip()
    if os.path.isdir(first):
        return os.path.join(first, METADATA_FILE)
    if os.path.basename(first) == METADATA_FILE:
        return first
    matches = sorted(glob.glob(first)) or [first]
    return os.path.join(os.path.dirname(matches[0]), METADATA_FILE)


def read_metadata(dir_or_pattern: str) -> dict:
    """The metadata of a created dataset: a directory, a shard file or glob, or metadata.json itself.

    Adds "path" (the metadata file) and "shard_paths" (absolute paths of the
    listed shards). Raises DataError when it is missing, not JSON or of
    another format.
    """
    path = metadata_path(dir_or_pattern)
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except FileNotFoundError:
        raise DataError(
            f"{path}: no metadata.json beside the shards; make them with `bert-jax create-data`"
        ) from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable metadata ({e}); re-create the dataset") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise DataError(f"{path}: format {found!r} is not {FORMAT!r}; re-create the dataset")
    directory = os.path.dirname(path)
    metadata["path"] = path
    metadata["shard_paths"] = [os.path.join(directory, s["file"]) for s in metadata.get("shards", [])]
    return metadata


def check_metadata(
    metadata: dict,
    *,
    max_seq_length: int | None = None,
    max_predictions_per_seq: int | None = None,
    vocab_sha256: str | None = None,
    vocab_size: int | None = None,
    masking: str | None = None,
) -> None:
    """Raise DataError, naming the metadata file and key, for each given setting the dataset was not made with."""
    settings, vocab = metadata["settings"], metadata["vocab"]
    where = metadata.get("path", METADATA_FILE)
    wanted = [
        ("settings.max_seq_length", settings.get("max_seq_length"), max_seq_length),
        ("settings.max_predictions_per_seq", settings.get("max_predictions_per_seq"), max_predictions_per_seq),
        ("settings.masking", settings.get("masking"), masking),
        ("vocab.sha256", vocab.get("sha256"), vocab_sha256),
        ("vocab.size", vocab.get("size"), vocab_size),
    ]
    for key, found, expected in wanted:
        if expected is not None and found != expected:
            raise DataError(
                f"{where}: {key} is {found!r} but {expected!r} is wanted; "
                "re-create the data with matching settings or change the config"
            )


def iter_records(path: str) -> Iterator[bytes]:
    """Serialized records of one TFRecord file; DataError naming the file and record on corruption."""
    import tensorflow as tf

    index = 0
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield record
            index += 1
    except tf.errors.OpError as e:
        message = (e.message or type(e).__name__).splitlines()[0]
        raise DataError(
            f"{path}: record {index} is unreadable ({message}); the shard is corrupt or truncated, re-create it"
        ) from None


def parse_records(records: list[bytes], features: dict[str, dict]) -> dict[str, np.ndarray]:
    """Batch-parse serialized records -> {feature: array [n, length]}; DataError if one lacks a feature."""
    import tensorflow as tf

    try:
        parsed = tf.io.parse_example(tf.constant(records, tf.string), parse_spec(features))
    except tf.errors.InvalidArgumentError as e:
        raise DataError(
            f"records do not match the features {sorted(features)} ({e.message.splitlines()[0]}); "
            "check max_seq_length / max_predictions_per_seq"
        ) from None
    return {k: v.numpy() for k, v in parsed.items()}
