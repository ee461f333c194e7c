"""ModernBERT's task heads as configuration of the one model (issue 19):
`ModelConfig.pooler="head"` is transformers' ModernBertPredictionHead (dense,
activation, norm) and `pooling` its `classifier_pooling` ("cls" or "mean"
over the attention mask). The sequence classifier's logits equal
ModernBertForSequenceClassification's, the token classifier's
ModernBertForTokenClassification's, after `convert --from=hf`; the export
writes a folder transformers loads with the same tensors.

Reference models: random tiny ModernBERTs (float32, eager attention, every
weight perturbed so that a swapped tensor shows), 4 layers, global every 3,
a window of 8 tokens; inputs of 24 tokens, padded and unpadded.
"""

import os

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bert_jax import checkpoints, convert  # noqa: E402
from bert_jax.errors import CheckpointError, ConfigError  # noqa: E402
from bert_jax.model import (  # noqa: E402
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    ModelConfig,
    modernbert_fields,
)

TOL = 1e-4
SEQ = 24
LABELS = 3


def _hf_config(**kw):
    fields = dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64, local_attention=8, global_attn_every_n_layers=3, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, reference_compile=False,
        attn_implementation="eager", num_labels=LABELS,
    )
    fields.update(kw)
    return transformers.ModernBertConfig(**fields)


def _random(model_class, config):
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def batch():
    """Three rows of 24 tokens: unpadded, padded after 15, padded after 5."""
    rng = np.random.RandomState(1)
    ids = rng.randint(3, 99, (3, SEQ)).astype(np.int32)
    ids[:, 0] = 1  # [CLS]
    mask = np.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = 0
    return ids, mask


def _hf_logits(model, batch):
    ids, mask = batch
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask).long()).logits.numpy()


@pytest.fixture(scope="module", params=["cls", "mean"])
def classifier(request, tmp_path_factory, batch):
    """(pooling, HF folder, transformers' logits, our imported (cfg, params))."""
    model = _random(transformers.ModernBertForSequenceClassification, _hf_config(classifier_pooling=request.param))
    folder = tmp_path_factory.mktemp(f"cls-{request.param}") / "hf"
    model.save_pretrained(folder)
    cfg, params, _ = checkpoints.load_model(folder)
    return request.param, folder, _hf_logits(model, batch), (cfg, params)


def _our_logits(model_class, cfg, params, batch):
    ids, mask = batch
    return np.asarray(model_class(cfg).apply({"params": params}, ids, mask, np.zeros_like(ids)))


def test_classifier_folder_imports_as_the_pooler_head_and_a_classifier(classifier):
    pooling, _, _, (cfg, params) = classifier
    assert (cfg.family, cfg.pooler, cfg.pooling, cfg.num_labels) == ("modernbert", "head", pooling, LABELS)
    assert sorted(params) == ["bert", "classifier"]
    assert sorted(params["bert"]["pooler"]) == ["LayerNorm", "dense"]  # no biases: classifier_bias=False
    assert params["classifier"]["kernel"].shape == (32, LABELS)


def test_sequence_logits_equal_transformers_cls_and_mean_pooling_on_padded_rows(classifier, batch):
    pooling, _, reference, (cfg, params) = classifier
    ours = _our_logits(BertForSequenceClassification, cfg, params, batch)
    diff = float(np.max(np.abs(ours - reference)))
    print(f"ModernBertForSequenceClassification ({pooling} pooling) max abs logit diff: {diff:.2e}")
    assert diff < TOL
    assert batch[1][0].all() and not batch[1][2].all()  # unpadded and padded rows both


def test_mean_pooling_ignores_what_the_padding_holds(classifier, batch):
    pooling, _, _, (cfg, params) = classifier
    ids, mask = batch
    other = np.where(mask == 1, ids, 7)  # padding positions hold another token
    a = _our_logits(BertForSequenceClassification, cfg, params, batch)
    b = _our_logits(BertForSequenceClassification, cfg, params, (other, mask))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_classifier_export_round_trips_bit_identical_through_transformers(classifier, batch, tmp_path):
    pooling, folder, reference, (cfg, params) = classifier
    summary = convert.export_hf(params, cfg, tmp_path / "out")
    assert summary["architecture"] == "ModernBertForSequenceClassification"
    again = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    original = transformers.ModernBertForSequenceClassification.from_pretrained(folder).state_dict()
    assert again.config.classifier_pooling == pooling and again.config.num_labels == LABELS
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    np.testing.assert_allclose(_hf_logits(again, batch), reference, atol=1e-6, rtol=0)


def test_token_logits_equal_transformers_at_real_tokens(tmp_path, batch):
    model = _random(transformers.ModernBertForTokenClassification, _hf_config())
    model.save_pretrained(tmp_path / "hf")
    cfg, params, _ = checkpoints.load_model(tmp_path / "hf")
    ours = _our_logits(BertForTokenClassification, cfg, params, batch)
    real = batch[1].astype(bool)
    diff = float(np.max(np.abs(ours[real] - _hf_logits(model, batch)[real])))
    print(f"ModernBertForTokenClassification max abs logit diff: {diff:.2e}")
    assert diff < TOL


def test_span_head_reads_every_token_through_the_pooler_transform(classifier, batch):
    _, _, _, (cfg, params) = classifier
    ids, mask = batch
    qa = {"bert": params["bert"], "qa_outputs": {"kernel": np.ones((32, 2), np.float32), "bias": np.zeros(2)}}
    start, end = BertForQuestionAnswering(cfg).apply({"params": qa}, ids, mask, np.zeros_like(ids))
    states = BertModel(cfg).apply({"params": params["bert"]}, ids, mask, transform_tokens=True)["token_output"]
    np.testing.assert_allclose(np.asarray(start), np.asarray(states).sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(start), np.asarray(end))


def test_modernbert_configs_build_the_prediction_head_and_bert_keeps_tanh():
    assert ModelConfig(**modernbert_fields(hidden_size=32, num_heads=4, num_layers=1)).pooler == "head"
    assert ModelConfig().pooler == "tanh" and ModelConfig().pooling == "cls"
    # A model_config.json written before the field existed: the family's pooler.
    assert ModelConfig.from_dict({"family": "modernbert"}).pooler == "head"


def test_unknown_pooling_is_one_config_error():
    with pytest.raises(ConfigError, match=r"^model.pooling='max'; expected one of cls, mean$"):
        ModelConfig(pooling="max")


def test_hf_folder_with_unknown_classifier_pooling_is_refused(tmp_path):
    _hf_config().save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"classifier_pooling": "cls"', '"classifier_pooling": "max"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"classifier_pooling='max'; supported: 'cls', 'mean'$"):
        checkpoints.load_model(tmp_path)


def test_export_of_a_classifier_with_the_tanh_pooler_is_refused(classifier, tmp_path):
    _, _, _, (cfg, params) = classifier
    with pytest.raises(CheckpointError, match=r"model.pooler='tanh'; transformers' ModernBertForSequenceClassification"):
        convert.export_hf(params, cfg.replace(pooler="tanh"), tmp_path / "out")


def test_fine_tuning_from_a_masked_lm_starts_the_head_from_the_mlm_transform(tmp_path):
    """As transformers does: ModernBertForSequenceClassification.from_pretrained
    of a ModernBertForMaskedLM folder reads `head.*`, the MLM transform."""
    import jax

    from bert_jax.finetune import step as ft_step
    from bert_jax.train import sharding

    hf = _random(transformers.ModernBertForMaskedLM, _hf_config())
    hf.save_pretrained(tmp_path / "mlm")
    cfg, params, _ = checkpoints.load_model(tmp_path / "mlm")
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    model = BertForSequenceClassification(cfg.replace(num_labels=LABELS))
    started = ft_step.init_params(model, 8, jax.random.PRNGKey(0), params, mesh)
    reference = transformers.ModernBertForSequenceClassification.from_pretrained(tmp_path / "mlm").state_dict()
    np.testing.assert_array_equal(np.asarray(started["bert"]["pooler"]["dense"]["kernel"]),
                                  reference["head.dense.weight"].numpy().T)
    np.testing.assert_array_equal(np.asarray(started["bert"]["pooler"]["LayerNorm"]["scale"]),
                                  reference["head.norm.weight"].numpy())


def test_export_of_a_padding_id_outside_the_vocabulary_is_refused(classifier, tmp_path):
    _, _, _, (cfg, params) = classifier
    with pytest.raises(CheckpointError, match=r"^model.pad_token_id=50283 is not an id of model.vocab_size=99; "):
        convert.export_hf(params, cfg.replace(pad_token_id=50283), tmp_path / "out")
    assert not (tmp_path / "out").exists()
