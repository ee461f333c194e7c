"""`bert-jax compile`: pretrain's step compiled for TPU / GPU topologies this
machine does not have (libtpu and the CUDA plugin compile without devices)."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from bert_jax import flops
from bert_jax.compile import roofline, topologies
from bert_jax.compile.topologies import GIB, parse_topology
from bert_jax.config import model_config, pretrain_config
from bert_jax.errors import ConfigError, UserError


def _runtime_or_skip(platform: str) -> None:
    try:
        topologies.check_runtime(platform)
    except UserError as e:
        pytest.skip(f"no compiler for {platform} topologies here: {e}")


def _tiny(batch=32, seq_len=128, **model):
    from bert_jax.compile import aot

    config = pretrain_config("tiny")
    config.model.update(model)
    return aot.resolve(config, global_batch=batch, seq_len=seq_len)


@pytest.fixture(scope="session")
def v4_report():
    _runtime_or_skip("tpu")
    from bert_jax.compile import aot

    return aot.compile_for_topology(_tiny(), parse_topology("v4-8"))


@pytest.fixture(scope="session")
def h100_report():
    _runtime_or_skip("cuda")
    from bert_jax.compile import aot

    return aot.compile_for_topology(_tiny(), parse_topology("h100x8"))


def _cli(*args, env=None, prelude=""):
    """Runs `bert-jax compile ARGS` in a fresh process (prelude: Python run first)."""
    # ml_collections defines the --config.X override flags from sys.argv.
    argv = ["bert-jax", "compile", *args]
    code = f"{prelude}\nimport sys\nsys.argv = {argv!r}\nfrom bert_jax import cli\ncli.run()"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=pathlib.Path(__file__).resolve().parents[1],
        timeout=600,
    )


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("bert-jax compile: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- topology names ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, platform, chips, slices, physical",
    [
        ("v4-8", "tpu", 4, 1, "v4:2x2x1"),
        ("v4-32", "tpu", 16, 1, "v4:2x2x4"),
        ("v5e-16", "tpu", 16, 1, "v5e:4x4"),
        ("v5e-256", "tpu", 256, 1, "v5e:16x16"),
        ("v5p-64", "tpu", 32, 1, "v5:2x4x4"),
        ("v6e-8", "tpu", 8, 1, "v6e:2x4"),
        ("2xv5e-256", "tpu", 256, 2, "v5e:16x16"),
        ("h100x8", "cuda", 8, 1, "1x1x8"),
        ("4xh100x8", "cuda", 8, 4, "4x1x8"),
        ("h200x8", "cuda", 8, 1, "1x1x8"),
    ],
)
def test_topology_names_as_users_write_them(name, platform, chips, slices, physical):
    t = parse_topology(name)
    assert (t.platform, t.chips_per_slice, t.num_slices, t.physical) == (platform, chips, slices, physical)
    assert t.num_devices == chips * slices


def test_unknown_topology_lists_the_known_ones():
    with pytest.raises(UserError, match=r"unknown topology 'v9-8'.*v5p-64.*h100x8"):
        parse_topology("v9-8")


def test_v4_name_with_odd_core_count_is_refused():
    with pytest.raises(UserError, match="two per chip"):
        parse_topology("v4-7")


def test_unknown_topology_is_one_line_and_exit_2():
    proc = _cli("--config=configs/bert_tiny.py", "--topology=v9-8")
    assert proc.returncode == 2
    assert "unknown topology 'v9-8'" in _error_line(proc)


# --- compiling bert_tiny ----------------------------------------------------


def test_v4_8_compiles_bert_tiny_and_fits(v4_report):
    r = v4_report
    assert (r["num_devices"], r["platform"], r["mesh"]) == (4, "tpu", {"data": 4, "fsdp": 1, "tensor": 1})
    assert r["fits"] is True and r["status"] == "fits"
    m = r["memory_per_chip"]
    assert r["bytes_per_chip"] == m["arguments"] + m["outputs"] + m["temporaries"] - m["aliased"]
    assert r["hbm_bytes_per_chip"] == 32 * GIB
    # The train step donates its state: the new state reuses the old one's buffers.
    assert m["aliased"] >= r["arguments_per_chip"]["params"] + r["arguments_per_chip"]["opt_state"]
    assert r["flops_source"] == "xla:tpu"


def test_h100x8_compiles_bert_tiny_with_flops_from_cpu(h100_report):
    r = h100_report
    assert (r["num_devices"], r["platform"], r["chip"]) == (8, "cuda", "NVIDIA H100 80GB HBM3")
    assert r["fits"] is True
    assert r["hbm_bytes_per_chip"] == 80 * 10**9
    assert r["flops_source"].startswith("xla:cpu")
    assert r["flops_per_step_per_chip"] > 0


def test_bert_with_attention_dropout_compiles_xla_attention(v4_report):
    # No fused kernel has dropout: BERT's attention stays XLA's own ops.
    assert v4_report["fused_attention_calls"] == {}


def test_modernbert_without_attention_dropout_compiles_the_splash_kernel_on_tpu():
    _runtime_or_skip("tpu")
    from bert_jax.compile import aot
    from bert_jax.config import family_config

    config = family_config("modernbert", "tiny")
    config.model.attention_dropout = 0.0
    config = aot.resolve(config, global_batch=8, seq_len=256)
    report = aot.compile_for_topology(config, parse_topology("v4-8"), cpu_flops=False)
    full_length = config.model.num_layers - 1  # the last layer runs at the masked positions, with XLA
    assert report["fused_attention_calls"] == {
        "splash_mha_dkv_segmented_no_residuals": full_length,
        "splash_mha_dq_segmented_no_residuals": full_length,
        "splash_mha_fwd_segmented_residuals": full_length,
    }
    # Those layers' scores stay on chip: the prediction counts no score traffic for them.
    assert report["fused_attention_layers"] == full_length and report["fused_attention_flops_per_step"] > 0


def test_fused_attention_layers_are_the_forward_calls_or_every_scanned_layer():
    from bert_jax.compile import aot

    cudnn = {"__cudnn$fmhaScaleBiasSoftmax": 21, "__cudnn$fmhaScaleBiasSoftmaxBackward": 21}
    splash = {"splash_mha_fwd_segmented_residuals": 3, "splash_mha_dq_segmented_no_residuals": 3}
    assert aot.fused_attention_layers(cudnn, 22, scanned=False) == 21
    assert aot.fused_attention_layers(splash, 4, scanned=False) == 3
    assert aot.fused_attention_layers({"splash_mha_fwd_x": 1}, 12, scanned=True) == 12
    assert aot.fused_attention_layers({}, 12, scanned=True) == 0


def test_fused_attention_flops_count_scores_and_context_of_the_fused_layers():
    from bert_jax.compile import aot
    from bert_jax.model import ModelConfig

    cfg = ModelConfig(vocab_size=100, hidden_size=8, num_layers=3, num_heads=2, intermediate_size=32,
                      max_position_embeddings=16, local_attention=2, global_attn_every_n_layers=3)
    # Layer 0 global (4 keys a query at L=4), layer 1 local (2.5 keys on average): 3 x 4*B*L*K*H each.
    assert aot.fused_attention_flops(cfg, 2, 4, 2) == 3 * 4 * 2 * 4 * 8 * (4 + 2.5)
    assert aot.fused_attention_flops(cfg, 2, 4, 0) == 0


def _failing_program(message):
    """A TrainProgram whose compile raises JaxRuntimeError(message)."""
    import jax

    from bert_jax.compile import aot

    class _Lowered:
        def compile(self):
            raise jax.errors.JaxRuntimeError(message)

    class _Step:
        def lower(self, *args):
            return _Lowered()

    return aot.TrainProgram(train_step=_Step(), state=None, batch={}, rng=None, mesh=None)


def test_a_triton_tiling_failure_is_one_line_naming_the_flag_that_avoids_it():
    from bert_jax.compile import aot

    program = _failing_program(
        "INTERNAL: Couldn't find output tile sizes that satisfy hlo: %dot.1 = bf16[2464,768]{1,0} dot(...)"
    )
    with pytest.raises(UserError, match="XLA_FLAGS=--xla_gpu_enable_triton_gemm=false"):
        aot._compile(program)


def test_a_vmem_overrun_is_told_apart_from_an_hbm_miss():
    from bert_jax.compile import aot

    vmem = _failing_program(
        "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space vmem. "
        "Used 19.70M of 16.00M vmem. Exceeded vmem capacity by 3.70M."
    )
    with pytest.raises(aot.OutOfMemory) as caught:
        aot._compile(vmem)
    assert (caught.value.space, caught.value.needed) == ("vmem", None)
    hbm = _failing_program(
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries "
        "(30.89G) exceeds available HBM (30.75G)."
    )
    with pytest.raises(aot.OutOfMemory) as caught:
        aot._compile(hbm)
    assert caught.value.space == "hbm"
    assert (caught.value.needed, caught.value.available) == (int(30.89 * GIB), int(30.75 * GIB))


def test_fused_attention_calls_are_counted_per_custom_call():
    from bert_jax.compile import aot

    hlo = "\n".join([
        '%a = (bf16[2,4,8,16]{3,2,1,0}, u8[0]{0}) custom-call(%q, %k, %v), custom_call_target="__cudnn$fmhaScaleBiasSoftmax"',
        '%b = bf16[2,4,8,16]{3,2,1,0} custom-call(%q), custom_call_target="__cudnn$fmhaScaleBiasSoftmaxBackward"',
        '%c = bf16[2,4,8,16]{3,2,1,0} custom-call(%q), custom_call_target="__cudnn$fmhaScaleBiasSoftmax"',
        '%d = f32[8]{0} custom-call(%x), custom_call_target="tpu_custom_call", backend_config={"name":"splash_mha_fwd_x"}',
        '%e = f32[8]{0} custom-call(%x), custom_call_target="tpu_custom_call", backend_config={"name":"other_kernel"}',
        '%f = f32[8]{0} fusion(%x), kind=kLoop, calls=%fused_splash_mha_lookalike',
    ])
    assert aot.fused_attention_calls(hlo) == {
        "__cudnn$fmhaScaleBiasSoftmax": 2, "__cudnn$fmhaScaleBiasSoftmaxBackward": 1, "splash_mha_fwd_x": 1,
    }
    assert aot.fused_attention_calls("%x = f32[2]{0} add(%a, %b)") == {}


def test_report_has_the_json_fields(v4_report):
    for key in (
        "topology", "num_devices", "global_batch", "seq_len", "fits", "hbm_bytes_per_chip",
        "bytes_per_chip", "flops_per_step_per_chip", "predicted_step_s", "predicted_mfu",
    ):
        assert key in v4_report, key
    assert (v4_report["global_batch"], v4_report["seq_len"]) == (32, 128)
    assert v4_report["prediction"]["kind"].startswith("calibrated prediction")
    assert v4_report["roofline_prediction"]["kind"].startswith("roofline prediction")
    # bert_tiny is memory-bound: XLA's bytes can put the roofline below the
    # calibrated model, so only the ranges are checked here.
    assert 0 < v4_report["predicted_mfu"] < 1 and 0 < v4_report["roofline_mfu"] < 1
    assert v4_report["predicted_sequences_per_s"] == pytest.approx(v4_report["predicted_tokens_per_s"] / 128)


def test_flops_xla_counts_agree_with_the_analytic_formula(v4_report):
    # Matmul FLOPs of the traced step (forward, backward; MLM at the masked
    # positions only) against bert_jax.flops.train_step_flops.
    ratio = v4_report["matmul_flops_per_step"] / v4_report["analytic_flops_per_step"]
    assert abs(ratio - 1) < 0.02, ratio
    # XLA's whole count adds the elementwise work on top, never less.
    assert v4_report["xla_flops_over_analytic"] >= 0.98


def test_scanned_layers_count_every_layer(v4_report):
    # XLA's cost analysis counts a while loop's body once; the report scales
    # the scanned program's count back to every layer (docs/scaling.md).
    _runtime_or_skip("tpu")
    from bert_jax.compile import aot

    config = _tiny(scan_layers=True)
    scanned = aot.compile_for_topology(config, parse_topology("v4-8"))
    # Traced matmuls, every layer over the body once: (2 layers + MLM head) / (1 layer + head).
    model_cfg = model_config(config)
    every_layer = flops.train_step_flops(model_cfg, 32, 128, 20)
    body_once = flops.train_step_flops(model_cfg.replace(num_layers=1), 32, 128, 20)
    assert scanned["xla_loop_scale"] == pytest.approx(every_layer / body_once, rel=1e-6)
    assert v4_report["xla_loop_scale"] == 1.0
    # The scale is exact for matmuls; elementwise work outside the loop is
    # scaled with it, so the totals agree only roughly (0.057 apart on CI's
    # clean install, 2026-11-25).
    assert abs(scanned["xla_flops_over_analytic"] - v4_report["xla_flops_over_analytic"]) < 0.1


def test_an_xla_count_below_the_traced_matmuls_is_floored_at_them(monkeypatch):
    """libtpu's cost analysis of some scanned, sharded programs (v5p, v6e)
    counts fewer FLOPs than the matmuls the step traces; the roofline would
    then exceed 100% MFU. The report floors the count and says so."""
    _runtime_or_skip("tpu")
    from bert_jax.compile import aot

    monkeypatch.setattr(aot, "_cost", lambda compiled: {"flops": 1.0, "bytes accessed": 1.0})
    r = aot.compile_for_topology(_tiny(batch=8), parse_topology("v4-8"))
    assert r["flops_per_step_per_chip"] == pytest.approx(r["matmul_flops_per_step"] / 4)
    assert "below the traced matmuls: floored at them" in r["flops_source"]
    assert r["roofline_mfu"] < 1


def test_oversized_model_reports_does_not_fit_with_both_numbers():
    _runtime_or_skip("tpu")
    from bert_jax.compile import aot

    # 30M x 128 float32 embeddings: 15 GB of parameters, 46 GB with Adam's moments.
    r = aot.compile_for_topology(_tiny(batch=8, vocab_size=30_000_000), parse_topology("v4-8"))
    assert r["fits"] is False
    m = re.fullmatch(r"does not fit: needs ([\d.]+) GiB of ([\d.]+) GiB", r["status"])
    assert m, r["status"]
    assert float(m.group(1)) > float(m.group(2))


def test_json_flag_prints_one_object():
    _runtime_or_skip("tpu")
    proc = _cli("--config=configs/bert_tiny.py", "--topology=v4-8", "--global_batch=16", "--seq_len=64", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["topology"], report["global_batch"], report["seq_len"], report["fits"]) == ("v4-8", 16, 64, True)


# --- bad input --------------------------------------------------------------


def test_mesh_that_does_not_divide_the_devices_is_one_line():
    _runtime_or_skip("tpu")
    proc = _cli("--config=configs/bert_tiny.py", "--topology=v4-8", "--config.mesh.data=3")
    assert proc.returncode == 2
    assert "mesh.data=3, mesh.fsdp=1, mesh.tensor=1 needs a multiple of 3 devices but there are 4" in _error_line(
        proc
    )


def test_mesh_check_names_the_sizes():
    from bert_jax.compile import aot

    config = _tiny()
    config.mesh.update(data=-1, fsdp=1, tensor=3)
    with pytest.raises(ConfigError, match="mesh.tensor=3 needs a multiple of 3 devices but there are 8"):
        aot.batch_unit(config, 8)


def test_batch_not_splitting_over_the_data_parallel_chips_is_refused():
    _runtime_or_skip("tpu")
    from bert_jax.compile import aot

    with pytest.raises(ConfigError, match="--global_batch=6 .* use a multiple of 4"):
        aot.compile_for_topology(_tiny(batch=6), parse_topology("v4-8"))


_NO_LIBTPU = """
import importlib.metadata as m
_real = m.version
def _version(name):
    if name == "libtpu":
        raise m.PackageNotFoundError(name)
    return _real(name)
m.version = _version
"""


def test_missing_libtpu_says_what_to_install():
    proc = _cli("--config=configs/bert_tiny.py", "--topology=v4-8", prelude=_NO_LIBTPU)
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "needs libtpu==" in line and "pip install" in line


def test_libtpu_of_another_version_says_which_to_install(monkeypatch):
    monkeypatch.setattr(topologies, "_installed_version", lambda p: "0.0.1")
    with pytest.raises(UserError, match=r"libtpu 0\.0\.1 is installed but jax .* needs libtpu==.*pip install"):
        topologies.check_runtime("tpu")


def test_missing_cuda_plugin_says_what_to_install(monkeypatch):
    monkeypatch.setattr(topologies, "_installed_version", lambda p: None)
    with pytest.raises(UserError, match=r"needs jax-cuda12-plugin==.*not installed.*pip install"):
        topologies.check_runtime("cuda")


# --- search and comparison (compiles faked: the logic, not XLA) --------------


def _fake_compile(bytes_for_batch):
    """compile_for_topology with memory per chip = bytes_for_batch(global batch)."""
    calls = []

    def compile_for_topology(config, topology, devices=None, cpu_flops=True):
        used = bytes_for_batch(config.batch_size)
        calls.append(config.batch_size)
        fits = used <= topology.chip.hbm_bytes
        sizes = {axis: config.mesh[axis] for axis in ("data", "fsdp", "tensor")}
        return {"fits": fits, "bytes_per_chip": used, "global_batch": config.batch_size, "mesh": sizes}

    compile_for_topology.calls = calls
    return compile_for_topology


def _linear(batch):
    return 11 * GIB + batch * GIB // 2  # v4's 32 GiB hold 42 examples


def _overrunning_vmem(fake, overran):
    """`fake`, except that a global batch for which `overran(batch)` holds
    fails as libtpu's VMEM overrun does (recorded in `fake.calls` too)."""

    def compile_for_topology(config, topology, devices=None, cpu_flops=True):
        if overran(config.batch_size):
            fake.calls.append(config.batch_size)
            return {"fits": False, "bytes_per_chip": None, "memory_space": "vmem", "global_batch": config.batch_size}
        return fake(config, topology, devices, cpu_flops)

    return compile_for_topology


def test_find_max_batch_fits_a_line_and_proves_the_next_unit_does_not_fit(monkeypatch):
    from bert_jax.compile import aot

    fake = _fake_compile(_linear)
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    assert best == 40  # multiples of the 4 data-parallel chips
    # 1 and 8 units, the line's answer (10 units), then 11 units, which does not fit.
    assert fake.calls == [4, 32, 40, 44]
    assert report["global_batch"] == 40 and report["max_batch_proven"] is True
    assert [p["fits"] for p in report["batch_search"]] == [True, True, True, False]


def test_find_max_batch_with_few_compiles_returns_the_largest_verified(monkeypatch):
    from bert_jax.compile import aot

    fake = _fake_compile(_linear)
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4, max_compiles=3)
    assert (best, fake.calls, report["max_batch_proven"]) == (40, [4, 32, 40], False)


def test_find_max_batch_steps_down_when_memory_jumps(monkeypatch):
    from bert_jax.compile import aot

    # Not a line: above 24 examples the compiler needs 10 GiB more.
    fake = _fake_compile(lambda b: _linear(b) + (10 * GIB if b > 24 else 0))
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    assert best == 24 and report["max_batch_proven"] is True
    assert fake.calls == [4, 32, 24, 28]


def test_find_max_batch_aims_at_the_compilers_own_limit(monkeypatch):
    from bert_jax.compile import aot

    def compile_for_topology(config, topology, devices=None, cpu_flops=True):
        # As libtpu on a v4: it refuses above 30 GiB, with its own two numbers.
        used = _linear(config.batch_size)
        if used <= 30 * GIB:
            return {"fits": True, "bytes_per_chip": used, "global_batch": config.batch_size}
        return {"fits": False, "bytes_per_chip": used, "compiler_hbm_bytes": 30 * GIB}

    monkeypatch.setattr(aot, "compile_for_topology", compile_for_topology)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    # 11 + b/2 <= 30 GiB: 38 examples, 36 in multiples of 4; the line first aims at 32 GiB (40).
    assert best == 36 and report["max_batch_proven"] is True
    assert [p["global_batch"] for p in report["batch_search"]] == [4, 32, 36, 40]


def test_find_max_batch_aims_at_the_chip_when_fits_pass_the_compilers_figure(monkeypatch):
    """libtpu's "available HBM" in a refusal (30 GiB here) counts its
    temporaries, our bytes per chip the whole program: batches that fit can
    use more. Aiming under its figure then never gets above the largest fit
    (bert_large seq 128 on a v4-8 crept 388, 392, 396, 400 and spent its
    compiles)."""
    from bert_jax.compile import aot

    def compile_for_topology(config, topology, devices=None, cpu_flops=True):
        # Flat to 64 examples, then 1 GiB each; fits up to 31.5 GiB (148 examples).
        used = 10 * GIB + max(0, config.batch_size - 64) * GIB // 4
        calls.append(config.batch_size)
        if used <= 31.5 * GIB:
            return {"fits": True, "bytes_per_chip": used, "global_batch": config.batch_size}
        return {"fits": False, "bytes_per_chip": used, "compiler_hbm_bytes": 30 * GIB}

    calls = []
    monkeypatch.setattr(aot, "compile_for_topology", compile_for_topology)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4, max_compiles=8)
    # After 144 (30 GiB, past 98% of the compiler's 30), the line aims at 98% of the chip's 32 GiB.
    assert calls == [4, 32, 1024, 112, 140, 144, 148, 152]
    assert best == 148 and report["max_batch_proven"] is True


def test_find_max_batch_aims_at_the_hbm_itself_near_the_top(monkeypatch):
    """Memory whose slope falls near the top (bert_base seq 512 DPxTP on a
    v5p-64 crept 4720, 4728, 4736 at 93.1-93.4 of 95 GiB and spent its
    compiles): once the largest fit is within 4% of the HBM the line aims at
    the HBM itself and the next unit up settles it."""
    from bert_jax.compile import aot

    # 2 GiB per unit of 4 examples up to 16, then 0.4 GiB: 32 GiB hold 56.
    fake = _fake_compile(lambda b: 20 * GIB + min(b, 16) * GIB // 2 + max(0, b - 16) * GIB // 10)
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    # 48 (31.2 GiB) is within 4%: aim at 32 GiB (56, which fits at 32.0), then 60, which does not.
    assert fake.calls == [4, 32, 36, 48, 56, 60]
    assert best == 56 and report["max_batch_proven"] is True


def test_find_max_batch_grows_at_most_32x_where_small_batches_show_no_slope(monkeypatch):
    from bert_jax.compile import aot

    # Flat up to 64 examples (fixed buffers), then 1/4 GiB per example: 32 GiB hold 152.
    fake = _fake_compile(lambda b: 10 * GIB + max(0, b - 64) * GIB // 4)
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    # 1 and 8 units show no slope: the third compile is 32 x 8 units (1024), not the 65536 limit.
    assert fake.calls == [4, 32, 1024, 120, 148, 152]
    assert best == 152 and report["max_batch_proven"] is False  # 156 not compiled: 6 compiles spent


def test_find_max_batch_halves_the_bracket_after_two_misses_in_a_row(monkeypatch):
    """Memory that is not a line near the top (as bert_base seq 512 DPxTP on a
    v4-8: 195 examples needed 31.2 GiB, 188 needed 33.4): the search used to
    walk down one unit a compile from the misses and never reach the answer."""
    from bert_jax.compile import aot

    def memory(b):
        # gentle up to 60 examples; above, 12 GiB more, falling a little with the batch
        return 10 * GIB + b * GIB // 5 if b <= 60 else 34 * GIB - (b - 60) * GIB // 100

    fake = _fake_compile(memory)
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4, max_compiles=10)
    # 104 and 92 miss: the bracket 32..104 is halved (60, fits), then narrowed to 60 | 64.
    assert fake.calls == [4, 32, 104, 92, 60, 84, 76, 68, 64]
    assert best == 60 and report["max_batch_proven"] is True


def test_find_max_batch_halves_the_bracket_when_fits_creep_up(monkeypatch):
    from bert_jax.compile import aot

    # Steep at first, then flat: the line through the bracket undershoots again and again.
    def memory(b):
        return 4 * GIB + min(b, 40) * GIB // 2 + max(0, b - 40) * GIB // 64

    fake = _fake_compile(memory)
    monkeypatch.setattr(aot, "compile_for_topology", fake)
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4, max_compiles=12)
    fits = [n for n in fake.calls if memory(n) <= 32 * GIB]
    steps = [b - a for a, b in zip(fits, fits[1:], strict=False)]
    # never three fits in a row that each gain a single unit (4 examples)
    assert all(not (x <= 8 and y <= 8 and z <= 8) for x, y, z in zip(steps, steps[1:], steps[2:], strict=False))
    assert best == max(fits)


def test_find_max_batch_goes_on_past_a_batch_that_overran_vmem(monkeypatch):
    """libtpu refused bert_base seq 512 at batch 192 on a v4-8 for VMEM (a
    kernel's tiling of that shape) while larger batches compiled: such a
    batch is no bound on the answer."""
    from bert_jax.compile import aot

    fake = _fake_compile(_linear)
    monkeypatch.setattr(aot, "compile_for_topology", _overrunning_vmem(fake, lambda b: b == 40))  # the line's answer
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    # 40 overran VMEM: the unit below (36) fits, the line aims at 40 again, so the unit above (44), which misses.
    assert fake.calls == [4, 32, 40, 36, 44]
    assert best == 36 and report["max_batch_proven"] is True
    assert [p.get("memory_space") for p in report["batch_search"]] == [None, None, None, "vmem", None]


def test_find_max_batch_goes_on_past_a_first_batch_that_overran_vmem(monkeypatch):
    """One example per chip can hit a kernel tiling the larger batches do not:
    that first probe is no proof that nothing fits."""
    from bert_jax.compile import aot

    fake = _fake_compile(_linear)
    monkeypatch.setattr(aot, "compile_for_topology", _overrunning_vmem(fake, lambda b: b == 4))  # one unit
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4)
    # 4 overran VMEM: the unit above (8) fits, then 8 units and the line on from there.
    assert fake.calls[:2] == [4, 8] and best == 40 and report["max_batch_proven"] is True
    assert report["batch_search"][0] == {"global_batch": 4, "bytes_per_chip": None, "fits": False,
                                         "memory_space": "vmem"}


def test_find_max_batch_finds_nothing_when_every_first_batch_overruns_vmem(monkeypatch):
    from bert_jax.compile import aot

    fake = _fake_compile(_linear)
    monkeypatch.setattr(aot, "compile_for_topology", _overrunning_vmem(fake, lambda b: True))
    best, report = aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4, max_compiles=3)
    assert (best, report) == (0, None) and fake.calls == [4, 8, 12]  # stops at the compile budget


def test_find_max_batch_when_nothing_fits(monkeypatch):
    from bert_jax.compile import aot

    monkeypatch.setattr(aot, "compile_for_topology", _fake_compile(lambda b: 40 * GIB))
    assert aot.find_max_batch(_tiny(), parse_topology("v4-8"), devices=[None] * 4) == (0, None)


def test_compare_parallelism_compiles_dp_fsdp_and_dp_tp(monkeypatch):
    from bert_jax.compile import aot

    monkeypatch.setattr(aot, "compile_for_topology", _fake_compile(lambda b: 0))
    out = aot.compare_parallelism(_tiny(), parse_topology("v4-8"), devices=[None] * 8)
    assert {k: v["mesh"] for k, v in out.items()} == {
        "DP": {"data": -1, "fsdp": 1, "tensor": 1},
        "FSDP": {"data": 1, "fsdp": -1, "tensor": 1},
        "DPxTP": {"data": -1, "fsdp": 1, "tensor": 4},
    }


# --- roofline ---------------------------------------------------------------


def test_collective_bytes_per_parallelism():
    dp = roofline.collective_bytes(roofline.Parallelism(4, 1, 1), 100.0, 10.0, 3)
    assert (dp.ici, dp.dcn) == (150.0, 0.0)  # all-reduce: 2 * 3/4 * 100
    fsdp = roofline.collective_bytes(roofline.Parallelism(1, 4, 1), 100.0, 10.0, 3)
    assert fsdp.ici == 225.0  # 2 all-gathers + 1 reduce-scatter: 3 * 3/4 * 100
    tp = roofline.collective_bytes(roofline.Parallelism(1, 1, 2), 100.0, 10.0, 3)
    assert tp.ici == 120.0  # 4 all-reduces per layer: 4 * 3 * 2 * 1/2 * 10
    two_slices = roofline.collective_bytes(roofline.Parallelism(4, 1, 1, slices=2), 100.0, 10.0, 3)
    assert (two_slices.ici, two_slices.dcn) == (100.0, 50.0)


def test_prediction_is_the_slower_roof_plus_communication():
    chip = topologies.CHIPS["v5p"]
    comm = roofline.CollectiveBytes(ici=chip.ici_bytes_per_s / 2, dcn=0.0)  # 1 s of ICI
    p = roofline.predict(chip, 2, chip.peak_bf16_flops * 2, chip.hbm_bytes_per_s, comm, 1000, chip.peak_bf16_flops)
    assert (p.compute_s, p.memory_s, p.collective_s, p.step_s) == (2.0, 1.0, 1.0, 3.0)
    assert p.tokens_per_s == pytest.approx(1000 / 3)
    assert p.mfu == pytest.approx(1 / 6)


def test_table_shows_does_not_fit_and_labels_the_prediction():
    from bert_jax.compile import table

    report = {
        "topology": "v5e-16", "num_devices": 16, "chip": "TPU v5 lite", "global_batch": 4096,
        "seq_len": 512, "mesh": {"data": 16, "fsdp": 1, "tensor": 1}, "hbm_bytes_per_chip": 16 * GIB,
        "arguments_per_chip": {"params": GIB, "opt_state": 2 * GIB, "batch": 0},
        "bytes_per_chip": 40 * GIB, "fits": False, "status": "does not fit: needs 40.00 GiB of 16.00 GiB",
    }
    text = table.format_table({"v5e-16": report})
    assert "does not fit: needs 40.00 GiB of 16.00 GiB" in text
    assert "40.00 GiB of 16.00 GiB" in text
    assert "PREDICTED step time" in text and "not a measurement" in text
    assert "roofline step time (bound)" in text and "upper bound" in text
