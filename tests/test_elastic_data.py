"""Elastic determinism of the input pipeline (no JAX): the global batch sequence
depends on the data, the seed, the global batch and the streams, never on the
process count -- also across a resume saved with another process count.

Process p's batches are its rows [p B/P, (p+1) B/P) of each global batch, so
the global batch is the concatenation of the P processes' batches.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_input_pipeline import write_dataset

from bert_jax.data.input_pipeline import PretrainingPipeline, auto_streams
from bert_jax.errors import ConfigError, DataError

GLOBAL_BATCH, FILES, PER_FILE = 8, 8, 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("elastic"), "static", files=FILES, per_file=PER_FILE)


def processes(files, count: int, **kwargs) -> list[PretrainingPipeline]:
    return [
        PretrainingPipeline(
            files,
            GLOBAL_BATCH // count,
            process_index=p,
            process_count=count,
            with_example_ids=True,
            seed=11,
            **{"shuffle_buffer": 16, **kwargs},
        )
        for p in range(count)
    ]


def global_batches(pipelines: list[PretrainingPipeline], steps: int) -> list[list[int]]:
    """Example ids of `steps` global batches: the processes' batches side by side, in process order."""
    return [
        np.concatenate([next(p)["example_id"] for p in pipelines]).tolist() for _ in range(steps)
    ]


def test_auto_streams_is_the_largest_divisor_of_the_batch_up_to_64():
    assert [auto_streams(b) for b in (1, 8, 12, 64, 96, 256, 4096)] == [1, 8, 12, 64, 48, 64, 64]


@pytest.mark.parametrize("streams", [None, 4], ids=["auto-8", "4"])
def test_one_two_and_four_processes_give_the_same_global_batches(shards, streams):
    # 14 steps: past the first epoch of each stream (one file of 24 records, 1 example per batch)
    one, two, four = (global_batches(processes(shards, n, streams=streams), 14) for n in (1, 2, 4))
    assert one == two == four
    assert len({i for batch in one[:6] for i in batch}) == 6 * GLOBAL_BATCH  # no repeats within an epoch


def test_fewer_files_than_streams_share_files_and_still_agree(shards):
    two_files = os.path.join(shards, "part-00[01].tfrecord")  # 2 files, 8 automatic streams
    one, four = (global_batches(processes(two_files, n), 6) for n in (1, 4))
    assert one == four
    assert len({i for batch in one for i in batch}) == 6 * GLOBAL_BATCH


@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
    """One shard of 50 records for 4 streams: 12 per stream and epoch, 2 left out."""
    return write_dataset(tmp_path_factory.mktemp("one_file"), "static", files=1, per_file=50)


def shared(files, count: int, **kwargs) -> list[PretrainingPipeline]:
    return processes(files, count, streams=4, share_files=True, **kwargs)


def test_shared_files_give_stream_s_every_fourth_record_in_lock_step(one_file):
    pipelines = shared(one_file, 1, shuffle_buffer=1, num_epochs=1)
    batches = global_batches(pipelines, 6)
    # Global batch i, row 2 s + r: stream s's record 2 i + r, which is record (2 i + r) * 4 + s.
    assert batches == [[(2 * i + r) * 4 + s for s in range(4) for r in range(2)] for i in range(6)]
    with pytest.raises(StopIteration):  # 12 records per stream (6 batches of 2); records 48 and 49 left out
        next(pipelines[0])


def test_shared_files_shuffle_each_streams_windows_apart(one_file):
    epoch = global_batches(shared(one_file, 1, shuffle_buffer=5), 6)
    for s in range(4):
        stream = [batch[2 * s + r] for batch in epoch for r in range(2)]  # stream s's 12 records, in order
        own = [j * 4 + s for j in range(12)]
        for start in (0, 5, 10):  # windows of 5 records (the last of 2), each permuted within itself
            assert sorted(stream[start : start + 5]) == own[start : start + 5]
        assert stream != own
    orders = [[batch[2 * s + r] // 4 for batch in epoch for r in range(2)] for s in range(4)]
    assert len({tuple(o) for o in orders}) > 1  # each stream draws its own permutation


@pytest.mark.parametrize("count", [1, 2])
def test_shared_files_resume_mid_window_and_across_epochs(one_file, count):
    reference = global_batches(shared(one_file, 1, shuffle_buffer=5), 15)  # 2.5 epochs of 6 batches
    for k in (1, 3, 6, 8, 13):  # in window 0, in window 1, at epoch 1's start, in it, in epoch 2
        running = shared(one_file, count, shuffle_buffer=5)
        global_batches(running, k)
        state = json.loads(json.dumps(running[0].state()))
        assert global_batches(shared(one_file, 4 // count, shuffle_buffer=5, state=state), 15 - k) == reference[k:]


@pytest.mark.parametrize("saved_on,resumed_on", [(4, 2), (1, 4)])
def test_resume_with_another_process_count_continues_the_same_sequence(shards, saved_on, resumed_on):
    reference = global_batches(processes(shards, 1), 14)
    running = processes(shards, saved_on)
    assert global_batches(running, 10) == reference[:10]
    state = json.loads(json.dumps(running[0].state()))  # only process 0's state is saved
    assert all(p.state() == state for p in running)
    resumed = processes(shards, resumed_on, state=state)
    assert global_batches(resumed, 4) == reference[10:]


def test_finite_epochs_end_on_the_same_global_batch_on_every_process(shards):
    ends = []
    for pipeline in processes(shards, 4, num_epochs=1):
        ends.append(sum(1 for _ in pipeline))
    assert ends == [PER_FILE * FILES // GLOBAL_BATCH] * 4


def test_resume_with_other_streams_is_refused(shards):
    state = processes(shards, 1, streams=8)[0].state()
    with pytest.raises(ConfigError, match=r"written with 8 streams .* resume with --config.data.streams=8"):
        processes(shards, 1, streams=4, state=state)


# -- bad input: each its own one-line error naming the fix ---------------------------------------


def test_process_count_that_does_not_divide_the_streams(shards):
    with pytest.raises(
        ConfigError,
        match=r"^4 processes cannot split data.streams=2 evenly .* set data.streams to a multiple of 4",
    ):
        processes(shards, 4, streams=2)


def test_streams_that_do_not_divide_the_global_batch(shards):
    with pytest.raises(
        ConfigError, match=r"^data.streams=3 does not divide the global batch of 8; .* use a divisor of 8"
    ):
        processes(shards, 1, streams=3)


def test_more_streams_than_files(shards):
    two_files = os.path.join(shards, "part-00[01].tfrecord")
    with pytest.raises(
        DataError, match=r": 2 shard files for data.streams=4; .* set data.streams to at most 2 .* at least 4 shards"
    ):
        processes(two_files, 1, streams=4)


def test_errors_are_one_line(shards):
    with pytest.raises(ConfigError) as error:
        processes(shards, 1, streams=3)
    assert "\n" not in str(error.value)


def test_pretrain_with_streams_that_do_not_divide_the_batch_is_one_line_and_exit_2(shards, tmp_path):
    from test_cli_faults import _bert_jax, _error
    from train_utils import CLI_TINY

    proc = _bert_jax(
        "pretrain",
        "--config=configs/demo.py",
        f"--workdir={tmp_path / 'run'}",
        *[a for a in CLI_TINY if not a.startswith(("--config.data.synthetic", "--config.data.max_pred"))],
        "--config.data.max_predictions_per_seq=3",  # the shards' (write_dataset)
        "--config.data.corpus=",
        "--config.data.vocab_size=0",
        f"--config.data.train_files={shards}",
        "--config.total_steps=1",
        "--config.data.streams=3",
    )
    assert _error(proc, "pretrain").startswith("data.streams=3 does not divide the global batch of 8; ")


def test_state_of_the_older_per_process_format_continues_at_its_step(shards):
    old = {"format": "bert-jax-input/1", "batches": 5, "epoch": 0, "batches_in_epoch": 5,
           "batches_per_epoch": 24, "seed": 11, "process_count": 2, "batch_size": 4}  # fmt: skip
    resumed = processes(shards, 2, state=old)
    assert resumed[0].state()["batches"] == 5
    assert global_batches(resumed, 1) == global_batches(processes(shards, 1), 6)[5:]


def test_rows_that_are_not_an_equal_part_of_the_batch_are_refused():
    from bert_jax.train import inputs

    spec = inputs.SourceSpec(global_batch=8, row_start=2, row_stop=5, seq_len=16, max_predictions=3)
    with pytest.raises(ConfigError, match=r"^process 0 holds rows 2-5 of a global batch of 8, not one of equal parts"):
        inputs.pipeline_factory(inputs_config(), 0)(spec, "train", "unused", None)


def inputs_config():
    from bert_jax.config import pretrain_config

    return pretrain_config("tiny").data
