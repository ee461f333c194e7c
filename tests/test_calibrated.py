"""The calibrated step-time model (bert_jax.compile.calibrated): fitted to one
published measurement, monotonic in the work, its constants where documented,
and its error on every published measurement it was not fitted to pinned
(docs/scaling.md shows the same numbers). No compiles: the workloads are
analytic or written by hand."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from bert_jax.compile import calibrated, roofline
from bert_jax.compile.topologies import CHIPS

REPO = pathlib.Path(__file__).resolve().parents[1]


def _workload(**changes) -> calibrated.Workload:
    base = calibrated.Workload(
        num_chips=8,
        matmul_flops=1e15,
        activation_elements=1e9,
        score_elements=1e9,
        activation_itemsize=2,
        param_bytes=1.3e9,
        accum_steps=1,
        collectives=roofline.CollectiveBytes(ici=2e9, dcn=0.0),
        model_flops=8e15,
        tokens=1 << 20,
    )
    return dataclasses.replace(base, **changes)


def test_the_calibration_reproduces_the_calibration_point_exactly():
    p = calibrated.CALIBRATION
    efficiency = calibrated.calibrate_matmul_efficiency(p)
    assert calibrated.predicted_sequences_per_s(p, efficiency=efficiency) == pytest.approx(
        p.sequences_per_s, rel=1e-12
    )


def test_the_documented_efficiency_is_the_fitted_one():
    # MATMUL_EFFICIENCY is written out to 4 digits: within rounding of the fit,
    # so the calibration point is met to 0.01%.
    assert calibrated.calibrate_matmul_efficiency() == pytest.approx(calibrated.MATMUL_EFFICIENCY, abs=5e-5)
    p = calibrated.CALIBRATION
    assert calibrated.predicted_sequences_per_s(p) == pytest.approx(p.sequences_per_s, rel=1e-4)


def test_the_calibration_point_is_nvidias_tf2_xla_a100_phase1_figure():
    p = calibrated.CALIBRATION
    assert (p.chip, p.num_chips, p.size, p.seq_len, p.micro_batch, p.accum_steps) == (
        "a100",
        8,
        "large",
        128,
        312,
        32,
    )
    assert p.global_batch == 79872  # the README's "Global Batch Size"
    assert p.sequences_per_s == 3799.24
    assert p.source == "TF2 21.02"
    assert p not in calibrated.VALIDATION and p not in calibrated.EXCLUDED


@pytest.mark.parametrize(
    "field", ["matmul_flops", "activation_elements", "score_elements", "param_bytes", "accum_steps"]
)
def test_more_work_never_predicts_a_shorter_step(field):
    base = _workload(accum_steps=2)
    more = dataclasses.replace(base, **{field: getattr(base, field) * 2})
    assert calibrated.predict(CHIPS["a100"], more).step_s > calibrated.predict(CHIPS["a100"], base).step_s


def test_more_collective_bytes_predict_a_longer_step():
    base = _workload()
    more = dataclasses.replace(base, collectives=roofline.CollectiveBytes(ici=4e9, dcn=1e9))
    assert calibrated.predict(CHIPS["a100"], more).step_s > calibrated.predict(CHIPS["a100"], base).step_s


def test_the_step_is_the_sum_of_its_terms():
    chip = CHIPS["a100"]
    w = _workload()
    p = calibrated.predict(chip, w, efficiency=0.5)
    assert p.matmul_s == pytest.approx(1e15 / (0.5 * chip.peak_bf16_flops))
    assert p.elementwise_s == pytest.approx((48 * 1e9 * 2 + 29 * 1e9) / chip.hbm_bytes_per_s)
    assert p.optimizer_s == pytest.approx(7 * 1.3e9 / chip.hbm_bytes_per_s)
    assert p.collective_s == pytest.approx(2e9 / (chip.ici_bytes_per_s / 2))
    assert p.step_s == pytest.approx(p.matmul_s + p.elementwise_s + p.optimizer_s + p.collective_s)
    assert p.tokens_per_s == pytest.approx((1 << 20) / p.step_s)
    assert p.mfu == pytest.approx(8e15 / (8 * chip.peak_bf16_flops * p.step_s))


def test_gradient_accumulation_reads_and_writes_the_gradient_buffer_each_micro_batch():
    assert calibrated.optimizer_bytes(_workload(accum_steps=1)) == 7 * 1.3e9
    assert calibrated.optimizer_bytes(_workload(accum_steps=4)) == (7 + 2 * 4) * 1.3e9


def test_the_calibrated_prediction_is_below_the_roofline_at_the_calibration_point():
    # The roofline's compute roof alone (matmuls at peak) is faster than the
    # calibrated step: the model never predicts more than the bound.
    w = calibrated.published_workload(calibrated.CALIBRATION)
    chip = CHIPS["a100"]
    assert calibrated.predict(chip, w).step_s > w.matmul_flops / chip.peak_bf16_flops


def test_bert_large_has_335_million_parameters():
    from bert_jax.config import model_config, pretrain_config

    assert calibrated.bert_param_count(model_config(pretrain_config("large"))) == pytest.approx(
        335e6, rel=0.01
    )


def test_calibration_fails_loudly_when_the_fixed_terms_exceed_the_measured_step():
    p = dataclasses.replace(calibrated.CALIBRATION, sequences_per_s=1e9)
    with pytest.raises(ValueError, match="memory-bound terms alone"):
        calibrated.calibrate_matmul_efficiency(p)


def test_constants_are_documented_where_the_docs_say():
    text = (REPO / "docs" / "scaling.md").read_text()
    module_doc = calibrated.__doc__
    names = ("MATMUL_EFFICIENCY", "ELEMENTWISE_PASSES", "SCORE_PASSES", "SCORE_F32_PASSES", "SCORE_MASK_PASSES")
    for name in (*names, "OPTIMIZER_PASSES"):
        assert name in module_doc, name
        assert name in text, name
    assert f"{calibrated.MATMUL_EFFICIENCY:.4f}" in text
    assert "3799.24" in module_doc


def test_validation_points_span_gpu_generations_lengths_and_tpu():
    points = calibrated.VALIDATION
    assert len(points) >= 3
    assert {p.chip for p in points} == {"a100", "a100-40gb", "v100", "v3"}
    assert {p.seq_len for p in points if isinstance(p, calibrated.Published)} == {128, 512}
    assert all(p.source in calibrated.SOURCES and p.setting for p in [*points, *calibrated.EXCLUDED])


def test_every_excluded_point_says_why():
    assert calibrated.EXCLUDED
    assert all(p.caveat for p in calibrated.EXCLUDED)


def test_a_score_element_costs_29_bytes_in_bf16_and_43_in_float32():
    # 7 compute-dtype, 3 float32 and 3 one-byte accesses per element and layer.
    assert calibrated.score_bytes_per_element(2) == 29
    assert calibrated.score_bytes_per_element(4) == 43


def test_the_lamb_runs_put_nine_tenths_of_the_sequences_at_seq_128():
    run = next(p for p in calibrated.VALIDATION if p.name == "TPU v3 x1024, batch 64k/32k")
    short, long = run.phases
    assert (short.seq_len, short.global_batch, long.seq_len, long.global_batch) == (128, 65536, 512, 32768)
    assert short.steps + long.steps == pytest.approx(8599)
    assert short.steps * short.global_batch == pytest.approx(9 * long.steps * long.global_batch)
    assert run.sequences_per_s == pytest.approx(run.sequences / (76.19 * 60))


def test_a_run_is_predicted_as_the_sum_of_its_phases_steps():
    run = next(p for p in calibrated.VALIDATION if p.name == "TPU v3 x16, batch 512 (Adam baseline)")
    from bert_jax.config import model_config, pretrain_config

    cfg = model_config(pretrain_config("large"))
    chip = calibrated.PUBLISHED_CHIPS["v3"]
    expected = 0.0
    for seq, preds, steps in ((128, 20, 900_000), (512, 80, 100_000)):
        w = calibrated.analytic_workload(cfg, 16, 1, 512, seq, preds, 1, 4)
        expected += steps * calibrated.predict(chip, w).step_s
    assert calibrated.run_seconds(run) == pytest.approx(expected)
    assert calibrated.predicted_sequences_per_s(run) == pytest.approx(512e6 / expected)


# Predicted / published throughput - 1, in percent, for every published point
# (docs/scaling.md, "Validation against published measurements").
EXPECTED_ERROR_PCT = {
    "A100 80GB seq 512, TF2 XLA": 23.7,
    "A100 80GB seq 128, 32 nodes, TF2 XLA": 6.4,
    "A100 80GB seq 512, 32 nodes, TF2 XLA": 11.9,
    "V100 seq 128, DGX-2, TF2 XLA": -0.9,
    "V100 seq 512, DGX-2, TF2 XLA": 5.7,
    "V100 seq 128, 8 GPUs, TF2 XLA": -2.3,
    "V100 seq 512, 8 GPUs, TF2 XLA": 4.2,
    "A100 40GB seq 128, TF1 XLA": 26.4,
    "A100 40GB seq 512, TF1 XLA": 31.2,
    "A100 40GB seq 128, 32 nodes, TF1 XLA": 43.3,
    "A100 40GB seq 512, 32 nodes, TF1 XLA": 42.4,
    "V100 seq 128, DGX-1, TF1 XLA": 5.8,
    "V100 seq 512, DGX-1, TF1 XLA": 26.8,
    "V100 seq 128, DGX-2, TF1 XLA": -0.9,
    "V100 seq 512, DGX-2, TF1 XLA": 26.3,
    "A100 40GB seq 128, PyTorch 20.06": 12.4,
    "A100 40GB seq 512, PyTorch 20.06": 21.0,
    "V100 seq 128, DGX-1, PyTorch 20.06": 23.7,
    "V100 seq 512, DGX-1, PyTorch 20.06": 21.9,
    "V100 seq 128, DGX-2, PyTorch 20.06": 16.3,
    "V100 seq 512, DGX-2, PyTorch 20.06": 15.9,
    "A100 80GB seq 128, PyTorch 21.11": -17.3,
    "V100 seq 128, DGX-1, PyTorch 21.11": -12.6,
    "A100 80GB seq 128, Paddle 22.08": -9.6,
    "A100 80GB seq 512, Paddle 22.08": -2.4,
    "TPU v3 x16, batch 512 (Adam baseline)": 8.5,
    "TPU v3 x16, batch 512 (LAMB)": 10.3,
    "TPU v3 x32, batch 1k": 15.0,
    "TPU v3 x64, batch 2k": 13.9,
    "TPU v3 x128, batch 4k": 23.0,
    "TPU v3 x256, batch 8k": 38.5,
    "TPU v3 x512, batch 16k": 41.9,
    "TPU v3 x1024, batch 32k": 43.6,
    "TPU v3 x1024, batch 64k/32k": 11.5,
    # Excluded (not like for like), shown apart:
    "A100 80GB seq 128, Paddle 22.12 fused MHA": -31.5,
    "A100 80GB seq 128, 8 nodes, Paddle 22.12 fused MHA": -27.9,
    "A100 80GB seq 512, Paddle 22.12 fused MHA": -61.9,
    "A100 80GB seq 512, PyTorch 21.11": -51.5,
    "V100 seq 512, DGX-1, PyTorch 21.11": -44.7,
    "V100 seq 128, 32 x DGX-2H, TF2 XLA": 7.0,
    "V100 seq 512, 32 x DGX-2H, TF2 XLA": 7.0,
}


def test_every_published_point_has_a_pinned_error():
    names = [p.name for p in [*calibrated.VALIDATION, *calibrated.EXCLUDED]]
    assert len(names) == len(set(names))
    assert set(names) == set(EXPECTED_ERROR_PCT)


@pytest.mark.parametrize("point", [*calibrated.VALIDATION, *calibrated.EXCLUDED], ids=lambda p: p.name)
def test_the_error_on_each_published_point_is_the_documented_one(point):
    assert 100 * calibrated.error(point) == pytest.approx(EXPECTED_ERROR_PCT[point.name], abs=0.05)


def test_the_goal_is_missed_on_exactly_the_nine_documented_points():
    # Issue 16's goal: every validation point within +-25%. Not met; these
    # are the points docs/scaling.md names as outside it.
    outside = {p.name for p in calibrated.VALIDATION if abs(calibrated.error(p)) > 0.25}
    assert outside == {
        "A100 40GB seq 128, TF1 XLA",
        "A100 40GB seq 512, TF1 XLA",
        "A100 40GB seq 128, 32 nodes, TF1 XLA",
        "A100 40GB seq 512, 32 nodes, TF1 XLA",
        "V100 seq 512, DGX-1, TF1 XLA",
        "V100 seq 512, DGX-2, TF1 XLA",
        "TPU v3 x256, batch 8k",
        "TPU v3 x512, batch 16k",
        "TPU v3 x1024, batch 32k",
    }


def _large_workload(parallelism=None):
    from bert_jax.config import model_config, pretrain_config

    cfg = model_config(pretrain_config("large"))
    return calibrated.analytic_workload(cfg, 8, 1, 256, 128, 20, 1, parallelism=parallelism)


def test_fsdp_updates_its_shard_and_gathers_the_parameters():
    dp = _large_workload()
    fsdp = _large_workload(roofline.Parallelism(1, 8, 1))
    assert fsdp.param_bytes == pytest.approx(dp.param_bytes / 8)
    assert fsdp.matmul_flops == dp.matmul_flops  # the same global batch, split over the same chips
    # two all-gathers and one reduce-scatter of all parameters, ring over 8: 1.5 x 2 x 7/8 x bytes
    assert fsdp.collectives.ici == pytest.approx(1.5 * 2 * 7 / 8 * dp.param_bytes)


def test_tensor_parallelism_sends_activations_four_times_a_layer():
    tp = _large_workload(roofline.Parallelism(2, 1, 4))
    layer_act = 256 / 2 * 128 * 1024 * 2  # [batch / data, seq, hidden] bf16 bytes
    shard = 4.0 * calibrated.bert_param_count(_large_cfg()) / 4
    expected = 4 * 24 * 2 * 3 / 4 * layer_act + 2 * 1 / 2 * shard  # activations + the data all-reduce
    assert tp.collectives.ici == pytest.approx(expected)


def _large_cfg():
    from bert_jax.config import model_config, pretrain_config

    return model_config(pretrain_config("large"))
