"""The TensorFlow-free TFRecord writer (`records.ShardWriter`) and create-data's TF-free import.

The writer frames records itself (length, masked CRC-32C of the length,
data, masked CRC-32C of the data); TensorFlow is the reference here: the
same bytes as `tf.io.TFRecordWriter`, read back by `tf.data.TFRecordDataset`
with its checksums verified.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bert_jax.data import records
from bert_jax.errors import DataError

tf = pytest.importorskip("tensorflow")

# Empty, one byte, a length needing 2 varint bytes, one over 64 KiB.
RECORDS = [b"", b"\x00", bytes(range(256)) * 2, b"x" * 70_000 + b"\xff"]


def _tf_written(path) -> bytes:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in RECORDS:
            writer.write(record)
    return path.read_bytes()


def _ours_written(path) -> bytes:
    writer = records.ShardWriter(str(path))
    for record in RECORDS:
        writer.write(record)
    writer.commit()
    return path.read_bytes()


def test_shard_writer_writes_the_bytes_of_tf_record_writer(tmp_path):
    assert _ours_written(tmp_path / "ours.tfrecord") == _tf_written(tmp_path / "tf.tfrecord")


def test_a_frame_is_length_checksum_data_checksum():
    frame = records.tfrecord_frame(b"abc")
    assert len(frame) == 8 + 4 + 3 + 4
    assert frame[:8] == (3).to_bytes(8, "little")
    assert frame[12:15] == b"abc"


def test_tf_reads_the_shard_back_with_its_checksums(tmp_path):
    path = tmp_path / "ours.tfrecord"
    _ours_written(path)
    assert list(records.iter_records(str(path))) == RECORDS


def test_a_flipped_data_byte_fails_tf_checksum(tmp_path):
    # The checksums are real: TensorFlow rejects the record whose data changed.
    path = tmp_path / "ours.tfrecord"
    data = bytearray(_ours_written(path))
    third = len(records.tfrecord_frame(RECORDS[0])) + len(records.tfrecord_frame(RECORDS[1]))
    data[third + 12 + 5] ^= 0x01  # a byte of the third record's data
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"ours.tfrecord: record 2 is unreadable"):
        list(records.iter_records(str(path)))


def test_importing_create_data_does_not_import_tensorflow():
    # create-data's main process with worker processes never needs TensorFlow (~5 CPU-s to import).
    code = (
        "import sys, bert_jax.commands.create_data, bert_jax.data.create_data, bert_jax.tokenization; "
        "loaded = [m for m in ('tensorflow', 'tensorflow_text') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
