"""A checkpoint holds the architecture and the weights; how to execute them
(dtypes, remat, scan, attention kernel) comes from the run's config.

`model_config.json` holds architecture keys only; parameters on disk are in
the canonical layout (unrolled `layer_i`); old checkpoints that still carry
execution keys, or stacked layers, load; a scanned pre-training run's model
reads into fine-tuning and extract-features with no conversion by the caller
and gives the unrolled model's outputs."""

import json

import jax
import ml_collections
import numpy as np
import pytest
from train_utils import PRED, SEQ, tiny_config

from bert_jax import checkpoints, features
from bert_jax.checkpoints.orbax_io import save_params
from bert_jax.config import model_config
from bert_jax.finetune import step as ft_step
from bert_jax.finetune import trainer
from bert_jax.model import ARCHITECTURE_FIELDS, BertModel, Execution, ModelConfig
from bert_jax.train import optim, resume, sharding, state

EXECUTION_KEYS = {
    "dtype",
    "param_dtype",
    "remat_policy",
    "scan_layers",
    "attention_impl",
    "last_layer_outputs_only",
}
LAYERS = 2


@pytest.fixture(scope="module")
def scanned_run(tmp_path_factory):
    """(workdir, run ModelSpec, run params with stacked layers) of a tiny
    pre-training run with `model.scan_layers=True`, its state saved at step 1."""
    workdir = tmp_path_factory.mktemp("scanned")
    config = tiny_config(**{"model.num_layers": LAYERS, "model.scan_layers": True})
    spec = model_config(config)
    opt = optim.make_optimizer(config.optimizer, 10)
    mesh = sharding.make_mesh(
        ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1}), jax.devices()[:1]
    )
    train_state, _ = state.create_sharded_state(spec, opt, mesh, SEQ, PRED, seed=0)
    ckpt = resume.Checkpointer(workdir / "checkpoints", keep=1)
    ckpt.save(1, train_state, {"batches": 1})
    ckpt.close()
    (workdir / "config.json").write_text(config.to_json())
    return workdir, spec, checkpoints.numpy_params(jax.device_get(train_state.params))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 128, (2, SEQ)).astype(np.int32)
    mask = (np.arange(SEQ)[None] < np.array([[SEQ], [9]])).astype(np.int32)
    return ids, mask, np.zeros_like(ids)


def _run_outputs(spec, params, inputs):
    """The scanned run's own BertModel on its own (stacked) parameters."""
    return BertModel(spec).apply({"params": params["bert"]}, *inputs, return_all_hidden=True)


def test_the_run_stacks_its_layers(scanned_run):
    _, spec, params = scanned_run
    assert spec.scan_layers and set(params["bert"]["encoder"]) == {"layers"}


def test_model_config_json_holds_the_architecture_only(scanned_run, tmp_path):
    _, spec, params = scanned_run
    checkpoints.save_model(tmp_path / "model", spec.replace(dtype="bfloat16", remat_policy="full"), params)
    saved = json.loads((tmp_path / "model" / checkpoints.MODEL_CONFIG).read_text())
    assert set(saved) == set(ARCHITECTURE_FIELDS)
    assert not set(saved) & EXECUTION_KEYS
    cfg, loaded, _ = checkpoints.load_model(tmp_path / "model")
    assert type(cfg) is ModelConfig and cfg == spec.architecture
    assert set(loaded["bert"]["encoder"]) == {f"layer_{i}" for i in range(LAYERS)}


def test_architecture_and_execution_fields_partition_the_run_config():
    section = tiny_config().model
    assert set(section) == set(ARCHITECTURE_FIELDS) | EXECUTION_KEYS
    assert not set(ARCHITECTURE_FIELDS) & EXECUTION_KEYS


def test_old_model_config_json_with_execution_keys_and_stacked_layers_loads(scanned_run, tmp_path):
    """A checkpoint written before the split: model_config.json with every
    execution key of its run, params in the run's stacked layout."""
    _, spec, params = scanned_run
    folder = tmp_path / "old"
    checkpoints.save_model(folder, spec, params)
    fields = {**spec.to_dict(), **{key: getattr(spec, key) for key in EXECUTION_KEYS}, "dtype": "bfloat16"}
    (folder / checkpoints.MODEL_CONFIG).write_text(json.dumps(fields))
    with checkpoints.atomic_directory(tmp_path / "old_stacked") as tmp:
        save_params(tmp / checkpoints.PARAMS_DIR, params)  # stacked, as a scanned run once saved it
        (tmp / checkpoints.MODEL_CONFIG).write_text(json.dumps(fields))
    for path in (folder, tmp_path / "old_stacked"):
        cfg, loaded, _ = checkpoints.load_model(path)
        assert type(cfg) is ModelConfig and cfg == spec.architecture
        stacked = params["bert"]["encoder"]["layers"]["layer"]["intermediate"]["kernel"]
        for i in range(LAYERS):
            np.testing.assert_array_equal(
                loaded["bert"]["encoder"][f"layer_{i}"]["intermediate"]["kernel"], stacked[i]
            )


def test_workdir_loads_as_architecture_and_canonical_params(scanned_run):
    workdir, spec, _ = scanned_run
    cfg, loaded, meta = checkpoints.load_model(workdir)
    assert meta["step"] == 1 and type(cfg) is ModelConfig and cfg == spec.architecture
    assert set(loaded["bert"]["encoder"]) == {f"layer_{i}" for i in range(LAYERS)}


def test_extract_features_of_the_scanned_run_equal_its_own_outputs(scanned_run, inputs):
    workdir, spec, params = scanned_run
    cfg, loaded, _ = checkpoints.load_model(workdir)
    extractor = features.FeatureExtractor(cfg, loaded, layers=[0, 1], max_seq_length=SEQ, batch_size=2)
    ids, mask, seg = inputs
    batch = [features.Features(i, [], ids[i], mask[i], seg[i]) for i in range(2)]
    got = extractor(batch)  # [layers, batch, seq, hidden]
    want = _run_outputs(spec, params, inputs)["hidden_states"][1:]
    for layer in range(LAYERS):
        np.testing.assert_allclose(got[layer], want[layer], rtol=0, atol=1e-6)


def test_fine_tuning_model_of_the_scanned_run_equals_its_own_outputs(scanned_run, inputs):
    workdir, spec, params = scanned_run
    cfg, loaded, _ = checkpoints.load_model(workdir)
    ft_cfg = trainer.finetune_config(cfg, 2, ml_collections.ConfigDict({"dtype": "float32"}))
    assert ft_cfg.execution == Execution()  # unrolled, float32: the fine-tuning run's own
    classifier = {"kernel": np.ones((cfg.hidden_size, 2), np.float32), "bias": np.zeros(2, np.float32)}
    logits = ft_step.make_model("classification", ft_cfg).apply(
        {"params": {"bert": loaded["bert"], "classifier": classifier}}, *inputs
    )
    pooled = _run_outputs(spec, params, inputs)["pooled_output"]
    np.testing.assert_allclose(logits, np.asarray(pooled) @ classifier["kernel"], rtol=0, atol=1e-6)
