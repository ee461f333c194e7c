"""XNLI: the official files' layout read as run_classifier's XnliProcessor,
per-language accuracy, TFDS xnli, a tiny fine-tune end to end, bad input.
All files are built here, a handful of pairs in English, German and Chinese."""

import importlib.util
import json
import logging
import pathlib

import numpy as np
import pytest
from train_utils import save_random_checkpoint, tiny_finetune_config  # noqa: E402

from bert_jax.errors import ConfigError, DataError  # noqa: E402
from bert_jax.finetune import tasks, trainer, xnli  # noqa: E402

CONFIG_FILE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "finetune" / "xnli.py"


def xnli_config():
    """configs/finetune/xnli.py's get_config() (configs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("xnli_config", CONFIG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "man", "is", "sleeping", "awake", "not"]
VOCAB += ["ein", "mann", "schläft", "ist", "wach", "nicht", "一", "个", "人", "在", "睡", "觉", "醒", "不"]
# The official xnli.dev.tsv / xnli.test.tsv header.
XNLI_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse"]
XNLI_HEADER += ["sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2"]
XNLI_HEADER += ["label3", "label4", "label5", "sentence1_tokenized", "sentence2_tokenized", "match"]
PAIRS = {  # language -> [(premise, hypothesis, label)]
    "en": [
        ("a man is sleeping .", "a man is awake .", "contradiction"),
        ("a man is sleeping .", "a man is sleeping .", "entailment"),
    ],
    "de": [
        ("ein mann schläft .", "ein mann ist wach .", "contradiction"),
        ("ein mann schläft .", "ein mann schläft .", "entailment"),
    ],
    "zh": [
        ("一个人在睡觉 .", "一个人醒 .", "contradiction"),
        ("一个人在睡觉 .", "一个人在睡觉 .", "entailment"),
    ],
}
TRAIN = [  # XNLI-MT multinli.train.en.tsv: premise, hypo, label ("contradictory")
    ("a man is sleeping .", "a man is awake .", "contradictory"),
    ("a man is sleeping .", "a man is sleeping .", "entailment"),
    ("a man is awake .", "a man is sleeping .", "contradictory"),
    ("a man is awake .", "a man is awake .", "entailment"),
    ("a man is sleeping .", "a man is not awake .", "neutral"),
    ("a man is awake .", "a man .", "neutral"),
]


def xnli_row(language, premise, hypothesis, label, pair_id):
    fields = dict.fromkeys(XNLI_HEADER, "")
    fields.update(
        language=language, gold_label=label, sentence1=premise, sentence2=hypothesis, pairID=pair_id
    )
    return "\t".join(fields[c] for c in XNLI_HEADER)


def write_xnli(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["\t".join(XNLI_HEADER), *rows]) + "\n", encoding="utf-8")
    return path


def dev_rows():
    return [
        xnli_row(lang, p, h, label, str(i))
        for lang, pairs in PAIRS.items()
        for i, (p, h, label) in enumerate(pairs)
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint dir, XNLI folder as released: XNLI-1.0/ and XNLI-MT-1.0/multinli/)."""
    root = tmp_path_factory.mktemp("xnli")
    save_random_checkpoint(root, VOCAB)
    data = root / "data"
    # One row of a language outside the 15 ("pt"): skipped and counted.
    write_xnli(
        data / "XNLI-1.0" / "xnli.dev.tsv",
        dev_rows() + [xnli_row("pt", "um homem .", "a man .", "neutral", "9")],
    )
    write_xnli(data / "XNLI-1.0" / "xnli.test.tsv", dev_rows()[::-1])
    train = data / "XNLI-MT-1.0" / "multinli" / "multinli.train.en.tsv"
    train.parent.mkdir(parents=True)
    train.write_text(
        "premise\thypo\tlabel\n" + "".join(f"{p}\t{h}\t{y}\n" for p, h, y in TRAIN), encoding="utf-8"
    )
    return root / "ckpt", data


def _config(tiny, **overrides):
    ckpt, data = tiny
    return tiny_finetune_config(xnli_config(), ckpt, data, **{"total_steps": 2, **overrides})


# ---- readers ----


def test_xnli_is_a_registered_task():
    assert tasks.family("xnli") == "xnli" and tasks.module_for("XNLI") is xnli


def test_xnli_mt_train_file_maps_contradictory_to_contradiction(tiny):
    path = tiny[1] / "XNLI-MT-1.0" / "multinli" / "multinli.train.en.tsv"
    examples = xnli.read_train_file(path)
    assert [e.label for e in examples[:3]] == ["contradiction", "entailment", "contradiction"]
    assert (examples[0].text_a, examples[0].text_b, examples[0].guid) == (
        "a man is sleeping .",
        "a man is awake .",
        "multinli.train.en.tsv:2",
    )
    assert xnli.label_ids(examples) == [0, 1, 0, 1, 2, 2]


def test_glue_mnli_train_file_reads_too(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(
        "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n"
        "0\t1\t1e\tfiction\ta man .\ta man is awake .\tneutral\n"
    )
    [example] = xnli.read_train_file(path)
    assert (example.text_a, example.text_b, example.label) == ("a man .", "a man is awake .", "neutral")


def test_dev_file_rows_by_language_and_an_unknown_language_is_a_counted_skip(tiny, caplog):
    path = tiny[1] / "XNLI-1.0" / "xnli.dev.tsv"
    with caplog.at_level(logging.WARNING):
        examples = xnli.read_eval_file(path)
    assert [e.language for e in examples] == ["en", "en", "de", "de", "zh", "zh"]
    assert (examples[2].text_a, examples[2].label, examples[2].uid) == (
        "ein mann schläft .",
        "contradiction",
        "0",
    )
    assert "skipped 1 rows" in caplog.text and "'pt': 1" in caplog.text
    assert [e.language for e in xnli.read_eval_file(path, languages=("zh",))] == ["zh", "zh"]


def test_a_row_with_the_wrong_column_count_names_file_and_line(tmp_path):
    path = write_xnli(tmp_path / "xnli.dev.tsv", dev_rows()[:2] + ["en\tentailment\ttoo few"])
    with pytest.raises(DataError, match=r"xnli\.dev\.tsv:4: 3 tab-separated fields, expected 19"):
        xnli.read_eval_file(path)


def test_an_unknown_label_names_the_row(tmp_path):
    path = write_xnli(tmp_path / "xnli.dev.tsv", [xnli_row("en", "a .", "a .", "maybe", "0")])
    with pytest.raises(DataError, match=r"xnli\.dev\.tsv:2: label 'maybe' is not an XNLI label"):
        xnli.label_ids(xnli.read_eval_file(path))


def test_a_train_file_of_neither_layout_is_refused(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na man .\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv: header \['sentence', 'label'\] has neither XNLI-MT's"):
        xnli.read_train_file(path)


def test_a_missing_column_and_a_missing_file_are_named(tmp_path):
    path = tmp_path / "xnli.dev.tsv"
    path.write_text("language\tsentence1\nen\ta .\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['sentence2', 'gold_label'\]"):
        xnli.read_eval_file(path)
    with pytest.raises(DataError, match=r"nothing\.tsv does not exist"):
        xnli.read_eval_file(tmp_path / "nothing.tsv")


def test_config_languages_must_be_xnli_languages(tiny):
    assert xnli.eval_languages(_config(tiny)) == xnli.LANGUAGES
    assert xnli.eval_languages(_config(tiny, languages="de, zh")) == ("de", "zh")
    with pytest.raises(ConfigError, match=r"\['pt'\], not XNLI languages"):
        xnli.eval_languages(_config(tiny, languages="en,pt"))


def test_the_flat_layout_of_the_original_data_dir_is_found_and_a_missing_file_named(tmp_path):
    write_xnli(tmp_path / "xnli.dev.tsv", dev_rows())
    config = xnli_config()
    config.data_dir = str(tmp_path)
    assert xnli.eval_path(config, "dev") == tmp_path / "xnli.dev.tsv"
    with pytest.raises(DataError, match=r"multinli.train.en.tsv nor .*XNLI-MT-1.0/multinli/multinli.train.en.tsv exists"):
        xnli.train_path(config)


# ---- metric ----


def test_per_language_accuracy_and_their_unweighted_mean():
    languages = ["en", "en", "de", "de", "zh"]
    labels = [0, 1, 2, 2, 1]
    logits = np.eye(3)[[0, 1, 2, 0, 0]]  # predictions 0 1 2 0 0: en 2/2, de 1/2, zh 0/1
    assert xnli.xnli_metrics(languages, labels, logits) == {
        "accuracy_en": 1.0,
        "accuracy_de": 0.5,
        "accuracy_zh": 0.0,
        "accuracy": 0.5,  # not 3/5
    }


# ---- TensorFlow Datasets ----


def test_tfds_xnli_gives_one_row_per_pair_and_language(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    def as_dataset(self, split, **kwargs):
        if self.name == "multi_nli":
            return tf.data.Dataset.from_tensor_slices(
                {"premise": ["a man ."], "hypothesis": ["a man is awake ."], "label": [1]}  # neutral
            )
        return tf.data.Dataset.from_tensor_slices(
            {
                "premise": {
                    "de": ["ein mann schläft ."],
                    "en": ["a man is sleeping ."],
                    "zh": ["一个人在睡觉 ."],
                },
                "hypothesis": {
                    "language": [["de", "en", "zh"]],
                    "translation": [["ein mann .", "a man .", "一个人 ."]],
                },
                "label": [0],  # entailment
            }
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        [train] = xnli.read_tfds_train(str(tmp_path))
        dev = xnli.read_tfds_eval("validation", str(tmp_path), languages=("en", "zh"))
    assert (train.text_a, train.label, train.language) == ("a man .", "neutral", "en")
    assert [(e.language, e.text_a, e.text_b, e.label) for e in dev] == [
        ("en", "a man is sleeping .", "a man .", "entailment"),
        ("zh", "一个人在睡觉 .", "一个人 .", "entailment"),
    ]


# ---- end to end ----


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("xnli_work")
    results = trainer.run(_config(tiny, eval_test=True), workdir)
    return workdir, results


def test_results_json_has_per_language_accuracies(trained):
    workdir, results = trained
    assert json.loads((workdir / "results.json").read_text()) == json.loads(json.dumps(results))
    dev = results["dev"]
    assert results["task"] == "xnli"
    assert set(dev) == {f"{p}accuracy{s}" for p in ("", "test_") for s in ("", "_en", "_de", "_zh")}
    for prefix in ("", "test_"):
        per_language = [dev[f"{prefix}accuracy_{x}"] for x in ("en", "de", "zh")]
        assert all(a in (0.0, 0.5, 1.0) for a in per_language)  # 2 pairs per language
        assert dev[f"{prefix}accuracy"] == pytest.approx(np.mean(per_language))
    head = json.loads((workdir / "best" / "head.json").read_text())
    assert head == {"task": "xnli", "head": "classification", "labels": list(xnli.LABELS)}


def test_predict_mode_writes_language_and_label_per_row(tiny, trained):
    workdir, _ = trained
    test_file = tiny[1] / "XNLI-1.0" / "xnli.test.tsv"
    out = trainer.run(_config(tiny, mode="predict", predict_file=str(test_file), init_checkpoint=""), workdir)
    lines = out.read_text().splitlines()
    assert lines[0] == "index\tlanguage\tprediction" and len(lines) == 7
    assert [line.split("\t")[1] for line in lines[1:]] == ["zh", "zh", "de", "de", "en", "en"]
    assert all(line.split("\t")[2] in xnli.LABELS for line in lines[1:])
