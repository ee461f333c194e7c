"""Head pruning as configuration: `ModelConfig.heads_per_layer` shapes each
layer's attention by its own head count in the one encoder; finetune's
predict mode reads head-pruned and magnitude-pruned checkpoints."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_tasks

from bert_jax.compress import models, prune
from bert_jax.compress.config import prune_config
from bert_jax.errors import ConfigError
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import glue, trainer
from bert_jax.model import BertForSequenceClassification, Execution, ModelConfig

CFG = toy_tasks.tiny_config(vocab_size=50, num_layers=2, hidden_size=32, num_heads=4)


def _shapes(cfg):
    ids = jnp.zeros((1, 8), jnp.int32)
    tree = jax.eval_shape(lambda: nn.meta.unbox(BertForSequenceClassification(cfg).init(
        jax.random.PRNGKey(0), ids, jnp.ones_like(ids), ids))["params"])
    return jax.tree.map(lambda x: x.shape, tree)


def test_every_head_kept_is_the_unpruned_model_bit_for_bit():
    full = toy_tasks.init_params(CFG.replace(heads_per_layer=(4, 4)), seed=1)
    plain = toy_tasks.init_params(CFG, seed=1)
    assert jax.tree.all(jax.tree.map(np.array_equal, full, plain))


def test_each_layer_has_its_own_head_count():
    attn = _shapes(CFG.replace(heads_per_layer=(2, 1)))["bert"]["encoder"]
    assert attn["layer_0"]["attention"]["query"]["kernel"] == (32, 2, 8)
    assert attn["layer_0"]["attention"]["value"]["bias"] == (2, 8)
    assert attn["layer_1"]["attention"]["key"]["kernel"] == (32, 1, 8)
    assert attn["layer_1"]["attention"]["output"]["kernel"] == (1, 8, 32)
    assert attn["layer_1"]["intermediate"]["kernel"] == (32, 64)  # the FFN is untouched


def test_equal_counts_work_scanned_and_shared():
    scanned_cfg = CFG.replace(heads_per_layer=(3, 3)).with_execution(Execution(scan_layers=True))
    scanned = _shapes(scanned_cfg)["bert"]["encoder"]
    assert scanned["layers"]["layer"]["attention"]["query"]["kernel"] == (2, 32, 3, 8)
    shared = _shapes(CFG.replace(heads_per_layer=(2, 2), share_layers=True, family="albert"))["bert"]["encoder"]
    assert shared["shared_layer"]["attention"]["output"]["kernel"] == (2, 8, 32)


def test_config_round_trips_through_json():
    cfg = CFG.replace(heads_per_layer=(2, 1))
    again = ModelConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg and again.heads_per_layer == (2, 1) and hash(again) == hash(cfg)


@pytest.mark.parametrize("heads", [(2,), (2, 1, 1), (0, 2), (5, 1)])
def test_wrong_head_counts_are_refused(heads):
    with pytest.raises(ConfigError, match=r"model.heads_per_layer=.*expected 2 counts .* each from 1 to num_heads=4"):
        CFG.replace(heads_per_layer=heads)


def test_different_counts_with_scanned_layers_are_refused():
    with pytest.raises(ConfigError, match=r"heads_per_layer=\[2, 1\] with model.scan_layers=True"):
        CFG.replace(heads_per_layer=(2, 1)).with_execution(Execution(scan_layers=True))


def test_different_counts_with_a_shared_layer_are_refused():
    with pytest.raises(ConfigError, match=r"heads_per_layer=\[2, 1\] with model.share_layers=True"):
        CFG.replace(heads_per_layer=(2, 1), share_layers=True, family="albert")


# --------------------------------------------------------------------------
# finetune's predict mode on pruned checkpoints


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """(toy GLUE dir, fine-tuned workdir, config, params) of a tiny classifier."""
    root = tmp_path_factory.mktemp("pruned")
    vocab = toy_tasks.write_vocab(root / "vocab.txt")
    glue_dir = toy_tasks.write_sst2(root / "glue", n_train=16, n_dev=16)
    cfg = toy_tasks.tiny_config(len(vocab.read_text().split()))
    params = toy_tasks.init_params(cfg, seed=4)
    return glue_dir, toy_tasks.write_finetuned_workdir(root / "ft", cfg, params, vocab, glue_dir), cfg, params


def _predict(glue_dir, checkpoint, out_dir) -> list[str]:
    c = ft_config.finetune_config("sst2")
    c.update(dict(mode="predict", init_checkpoint=str(checkpoint), data_dir=str(glue_dir), max_seq_length=16,
                  eval_batch_size=8, predict_file=str(glue_dir / "SST-2" / "dev.tsv"),
                  predict_output=str(out_dir / "p.tsv")))
    return [line.split("\t")[1] for line in trainer.run(c, out_dir).read_text().splitlines()[1:]]


def _labels(cfg, params, glue_dir, vocab_file) -> list[str]:
    """Argmax labels of the float model on the dev rows, as fine-tuning encodes them."""
    from bert_jax.tokenization import WordPieceTokenizer

    examples = glue.read_glue_file(glue.get_task("sst2"), glue_dir / "SST-2" / "dev.tsv", with_labels=False)
    feats = glue.encode(examples, WordPieceTokenizer(str(vocab_file)), 16)
    logits = models.classifier_logits_fn(cfg)(params, feats["input_ids"], feats["input_mask"], feats["segment_ids"])
    return [str(i) for i in np.asarray(logits).argmax(-1)]


def test_predict_mode_reads_a_head_pruned_checkpoint(finetuned, tmp_path):
    glue_dir, workdir, cfg, params = finetuned
    keep = [[0, 3], [1]]
    small = prune.shrink_heads(params, keep)
    pruned_cfg = models.head_pruned_config(cfg, prune.head_counts(small))
    vocab = workdir / "best" / "vocab.txt"
    prune.save_pruned(tmp_path / "heads", pruned_cfg, small, keep, str(vocab), True)
    (tmp_path / "heads" / "head.json").write_text((workdir / "best" / "head.json").read_text())
    got = _predict(glue_dir, tmp_path / "heads", tmp_path)
    assert got == _labels(cfg, prune.mask_heads(params, keep), glue_dir, vocab)


def test_predict_mode_reads_a_magnitude_pruned_checkpoint(finetuned, tmp_path):
    glue_dir, workdir, cfg, params = finetuned
    prune.run(prune_config(method="magnitude", sparsity=0.5, throughput_runs=1), str(workdir), str(tmp_path / "mag"))
    pruned_cfg, pruned, _, _ = trainer.load_finetuned(tmp_path / "mag")
    assert prune.measured_sparsity(pruned) == pytest.approx(0.5, abs=0.01)
    got = _predict(glue_dir, tmp_path / "mag", tmp_path)
    assert got == _labels(pruned_cfg, pruned, glue_dir, workdir / "best" / "vocab.txt")
