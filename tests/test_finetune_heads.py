"""SQuAD (span) and NER (token) heads trained end to end for a step on tiny
files, with their predictions in the official / CoNLL formats."""

import json

import pytest
from train_utils import save_random_checkpoint  # noqa: E402

from bert_jax import checkpoints  # noqa: E402
from bert_jax.finetune import config as ft_config  # noqa: E402
from bert_jax.finetune import trainer  # noqa: E402

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "john",
    "lives",
    "in",
    "paris",
    "who",
    "where",
    "?",
    ".",
]
CONTEXT = "john lives in paris . john lives in paris ."


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_random_checkpoint(tmp_path_factory.mktemp("heads"), VOCAB)


def _base(ckpt, config):
    config.update(
        dict(init_checkpoint=str(ckpt), max_seq_length=16, batch_size=8, eval_batch_size=8, total_steps=1)
    )
    return config


def test_squad2_trains_and_writes_official_predictions(ckpt, tmp_path):
    qas = [
        {
            "id": "q1",
            "question": "where john lives ?",
            "is_impossible": False,
            "answers": [{"text": "paris", "answer_start": CONTEXT.index("paris")}],
        },
        {"id": "q2", "question": "who ?", "is_impossible": True, "answers": []},
    ]
    data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data))
    c = ft_config.finetune_config("squad2")
    c.update(
        dict(
            train_file=str(path),
            dev_file=str(path),
            doc_stride=4,
            max_query_length=8,
            max_answer_length=5,
            n_best_size=5,
            null_score_diff_threshold=0.0,
        )
    )
    results = trainer.run(_base(ckpt, c), tmp_path / "work")
    assert results["task"] == "squad2"
    assert {"exact_match", "f1", "HasAns_f1", "NoAns_f1"} <= set(results["dev"])
    c.mode, c.predict_file = "predict", str(path)
    out = trainer.run(c, tmp_path / "work")
    preds = json.loads(out.read_text())
    assert out.name == "predictions.json" and sorted(preds) == ["q1", "q2"]
    assert all(p in ("", "john", "lives", "in", "paris", ".") or " " in p for p in preds.values())
    _, params, _ = checkpoints.load_model(tmp_path / "work" / "best")
    assert params["qa_outputs"]["kernel"].shape == (32, 2)


def test_ner_trains_and_writes_conll_predictions(ckpt, tmp_path):
    lines = ["john B-PER", "lives O", "in O", "paris B-LOC", "", "paris B-LOC", ". O"]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "dev.txt").write_text("\n".join(lines) + "\n")
    c = ft_config.finetune_config("ner")
    c.update(dict(data_dir=str(tmp_path), train_file="train.txt", dev_file="dev.txt"))
    results = trainer.run(_base(ckpt, c), tmp_path / "work")
    assert set(results["dev"]) == {"precision", "recall", "f1", "accuracy"}
    c.mode, c.predict_file = "predict", str(tmp_path / "dev.txt")
    out = trainer.run(c, tmp_path / "work")
    rows = out.read_text().split("\n\n")
    assert [line.split()[0] for line in rows[0].splitlines()] == ["john", "lives", "in", "paris"]
    assert {line.split()[1] for line in out.read_text().split("\n") if line} <= {"O", "B-PER", "B-LOC"}
