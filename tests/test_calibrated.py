"""The calibrated step-time model (bert_jax.compile.calibrated): fitted to one
published measurement, monotonic in the work, its constants where documented.
No compiles: the workloads are analytic or written by hand."""

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


def test_the_calibration_point_is_nvidias_a100_phase1_figure():
    p = calibrated.CALIBRATION
    assert (p.chip, p.num_chips, p.size, p.seq_len, p.micro_batch, p.accum_steps) == (
        "a100",
        8,
        "large",
        128,
        256,
        32,
    )
    assert p.sequences_per_s == 5541
    assert p not in calibrated.VALIDATION


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
    assert p.elementwise_s == pytest.approx((48 * 1e9 + 12 * 1e9) * 2 / chip.hbm_bytes_per_s)
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
    for name in ("MATMUL_EFFICIENCY", "ELEMENTWISE_PASSES", "SCORE_PASSES", "OPTIMIZER_PASSES"):
        assert name in module_doc, name
        assert name in text, name
    assert f"{calibrated.MATMUL_EFFICIENCY:.4f}" in text
    assert "5541" in module_doc


def test_validation_points_are_not_the_calibration_point_and_span_chips_and_lengths():
    points = calibrated.VALIDATION
    assert len(points) >= 3
    assert {p.chip for p in points} >= {"a100", "v100"}
    assert {p.seq_len for p in points} == {128, 512}
    assert all(p.source and p.setting for p in points)
