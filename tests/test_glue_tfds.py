"""GLUE from TensorFlow Datasets (`--config.data_source=tfds`), offline:
`tfds.testing.mock_data` serves rows written here in place of prepared
`glue/*` datasets. Checks the examples, the TFDS-to-GLUE label mapping, and a
tiny fine-tuning run over them writing results.json."""

import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")

from train_utils import save_random_checkpoint  # noqa: E402

from bert_jax.errors import DataError  # noqa: E402
from bert_jax.finetune import config as ft_config  # noqa: E402
from bert_jax.finetune import glue, trainer  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "is", "good", "bad", "a", "cat", "sat"]

# Per TFDS config and split: the rows as tfds yields them (label = class index
# in the TFDS feature's names; -1 in test splits; a float for STS-B).
ROWS = {
    ("sst2", "train"): {"sentence": ["the film is good", "the film is bad"] * 4, "label": [1, 0] * 4},
    ("sst2", "validation"): {"sentence": ["a good film", "a bad film"], "label": [1, 0]},
    ("sst2", "test"): {"sentence": ["a film"], "label": [-1]},
    ("mrpc", "train"): {
        "sentence1": ["a cat sat", "the cat"],
        "sentence2": ["the cat sat", "a film"],
        "label": [1, 0],
    },
    ("mrpc", "validation"): {"sentence1": ["a cat"], "sentence2": ["the cat"], "label": [1]},
    ("stsb", "train"): {
        "sentence1": ["a cat", "a film"],
        "sentence2": ["the cat", "a cat"],
        "label": [4.5, 0.25],
    },
    ("stsb", "validation"): {"sentence1": ["the film"], "sentence2": ["a film"], "label": [3.0]},
    # TFDS MNLI names: entailment, neutral, contradiction (ours: contradiction, entailment, neutral).
    ("mnli", "train"): {"premise": ["p0", "p1", "p2"], "hypothesis": ["h0", "h1", "h2"], "label": [0, 1, 2]},
    ("mnli", "validation_matched"): {"premise": ["pm"], "hypothesis": ["hm"], "label": [2]},
    ("mnli", "validation_mismatched"): {"premise": ["px"], "hypothesis": ["hx"], "label": [1]},
}


def _as_dataset(builder, split, **kwargs):
    rows = ROWS[(builder.builder_config.name, str(split))]
    columns = {
        k: np.asarray(v, np.float32 if k == "label" and builder.builder_config.name == "stsb" else None)
        for k, v in rows.items()
    }
    columns["idx"] = np.arange(len(rows["label"]), dtype=np.int32)
    return tf.data.Dataset.from_tensor_slices(columns)


@pytest.fixture
def mock_glue():
    with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
        yield


def _examples(task, split):
    return [(e.guid, e.text_a, e.text_b, e.label) for e in glue.read_tfds_split(glue.get_task(task), split)]


def test_sst2_rows_become_glue_examples(mock_glue):
    assert _examples("sst2", "validation") == [
        ("glue/sst2/validation:0", "a good film", None, "1"),
        ("glue/sst2/validation:1", "a bad film", None, "0"),
    ]


def test_test_split_rows_have_no_label(mock_glue):
    assert _examples("sst2", "test") == [("glue/sst2/test:0", "a film", None, None)]


def test_mrpc_pairs_keep_the_tsv_labels(mock_glue):
    assert _examples("mrpc", "train") == [
        ("glue/mrpc/train:0", "a cat sat", "the cat sat", "1"),
        ("glue/mrpc/train:1", "the cat", "a film", "0"),
    ]


def test_stsb_scores_stay_numbers(mock_glue):
    assert [e[3] for e in _examples("stsb", "train")] == ["4.5", "0.25"]


def test_mnli_labels_map_by_name_to_our_order(mock_glue):
    config = ft_config.finetune_config("mnli")
    train, _, devs = glue.read_splits(_tfds(config), glue.get_task("mnli"))
    assert [e.label for e in train] == ["entailment", "neutral", "contradiction"]
    assert glue.label_ids(glue.get_task("mnli"), train, "train") == [1, 2, 0]
    assert {name: [e.label for e in ex] for name, (ex, _) in devs.items()} == {
        "dev": ["contradiction"],
        "dev_mismatched": ["neutral"],
    }


def _tfds(config):
    config.data_source = "tfds"
    config.data_dir = ""
    return config


def test_unprepared_dataset_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match=r"TFDS glue/sst2 split train is not prepared under .*; prepare it"):
        glue.read_tfds_split(glue.get_task("sst2"), "train", str(tmp_path))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_random_checkpoint(tmp_path_factory.mktemp("tfds_ckpt"), VOCAB, num_layers=1)


def test_finetune_over_tfds_sst2_writes_results(mock_glue, tiny_checkpoint, tmp_path):
    config = _tfds(ft_config.finetune_config("sst2"))
    config.update(
        dict(
            init_checkpoint=str(tiny_checkpoint),
            max_seq_length=8,
            batch_size=8,
            eval_batch_size=8,
            total_steps=2,
            learning_rate=1e-3,
            keep_best=False,
        )
    )
    trainer.run(config, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "sst2" and results["total_steps"] == 2
    assert results["dev"]["accuracy"] in (0.0, 0.5, 1.0)  # 2 validation rows
