"""GLUE, SQuAD and CoNLL readers: columns, features, windows, decoding, bad input."""

import numpy as np
import pytest

from bert_jax import tokenization
from bert_jax.errors import CheckpointError, DataError
from bert_jax.finetune import glue, ner, squad

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "dog",
    "ran",
    "a",
    ".",
    ",",
    "?",
    "who",
    "where",
    "play",
    "##ed",
    "##s",
    "new",
    "york",
    "john",
    "lives",
    "in",
    "big",
]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return tokenization.WordPieceTokenizer(str(path), lower_case=True)


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


# --------------------------------------------------------------------------
# GLUE


def test_sst2_columns_and_labels(tmp_path):
    path = _write(tmp_path / "SST-2" / "dev.tsv", ["sentence\tlabel", "the cat sat \t1", "a dog ran \t0"])
    examples = glue.read_glue_file(glue.get_task("sst2"), path)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("the cat sat ", None, "1"),
        ("a dog ran ", None, "0"),
    ]
    assert glue.label_ids(glue.get_task("sst2"), examples, str(path)) == [1, 0]


def test_cola_has_no_header_and_its_test_file_has_one(tmp_path):
    task = glue.get_task("cola")
    train = _write(tmp_path / "train.tsv", ["gj04\t1\t\tthe cat sat .", "gj04\t0\t*\tcat the sat ."])
    assert [(e.text_a, e.label) for e in glue.read_glue_file(task, train)] == [
        ("the cat sat .", "1"),
        ("cat the sat .", "0"),
    ]
    test = _write(tmp_path / "test.tsv", ["index\tsentence", "0\tthe dog ran ."])
    examples = glue.read_glue_file(task, test, with_labels=False)
    assert [(e.uid, e.text_a, e.label) for e in examples] == [("0", "the dog ran .", None)]


def test_mrpc_stsb_mnli_columns(tmp_path):
    mrpc = _write(
        tmp_path / "mrpc.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t7\t8\tthe cat\ta cat"]
    )
    (e,) = glue.read_glue_file(glue.get_task("mrpc"), mrpc)
    assert (e.text_a, e.text_b, e.label) == ("the cat", "a cat", "1")
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    stsb = _write(tmp_path / "stsb.tsv", [header, "0\tg\tf\ty\t1\ts\ts\tthe cat\ta dog\t3.800"])
    examples = glue.read_glue_file(glue.get_task("stsb"), stsb)
    assert glue.label_ids(glue.get_task("stsb"), examples, "stsb") == [3.8]
    cols = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "label2",
        "label3",
        "label4",
        "label5",
        "gold_label",
    ]
    row = ["0", "1", "2", "fiction", "b", "b", "p", "p", "the cat sat", "a cat", "neutral"] + ["neutral"] * 5
    mnli = _write(tmp_path / "dev_matched.tsv", ["\t".join(cols), "\t".join(row)])
    task = glue.get_task("mnli")
    examples = glue.read_glue_file(task, mnli)
    assert (examples[0].text_a, examples[0].text_b, examples[0].label) == ("the cat sat", "a cat", "neutral")
    assert glue.label_ids(task, examples, "mnli") == [2]  # contradiction, entailment, neutral


def test_glue_encoding_is_cls_a_sep_b_sep(tokenizer):
    feats = glue.encode([glue.GlueExample("x:1", "the cat", "a dog", "1")], tokenizer, 8)
    ids = [VOCAB.index(t) for t in ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]", "[PAD]"]]
    assert feats["input_ids"].tolist() == [ids]
    assert feats["segment_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 0]]
    assert feats["input_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]


def test_dev_label_never_seen_in_train_is_refused(tmp_path):
    task = glue.get_task("sst2")
    dev = glue.read_glue_file(task, _write(tmp_path / "dev.tsv", ["sentence\tlabel", "a\t0", "b\t1"]))
    with pytest.raises(DataError, match=r"dev.tsv:3 .*label '1' never occurs in the training file"):
        glue.label_ids(task, dev, str(tmp_path / "dev.tsv"), allowed={"0"})


def test_label_outside_the_task_is_refused(tmp_path):
    task = glue.get_task("rte")
    dev = glue.read_glue_file(
        task, _write(tmp_path / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"])
    )
    with pytest.raises(DataError, match="'maybe' is not a rte label"):
        glue.label_ids(task, dev, "dev.tsv")


def test_empty_tsv_is_refused(tmp_path):
    path = _write(tmp_path / "train.tsv", [])
    with pytest.raises(DataError, match=r"train.tsv is empty"):
        glue.read_glue_file(glue.get_task("sst2"), path)


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = _write(tmp_path / "train.tsv", ["sentence\tlabel", "good\t1", "bad row\t0\textra"])
    with pytest.raises(DataError, match=r"train.tsv:3: 3 tab-separated fields, expected 2"):
        glue.read_glue_file(glue.get_task("sst2"), path)


def test_missing_column_is_named(tmp_path):
    path = _write(tmp_path / "train.tsv", ["text\tlabel", "good\t1"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['sentence'\]"):
        glue.read_glue_file(glue.get_task("sst2"), path)


def test_glue_metrics_per_task():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert glue.glue_metrics(glue.get_task("mrpc"), [1, 0, 0], logits) == {
        "accuracy": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
    }
    assert set(glue.glue_metrics(glue.get_task("cola"), [1, 0, 0], logits)) == {"matthews_corr"}
    out = glue.glue_metrics(glue.get_task("stsb"), [1.0, 2.0, 3.0], np.array([[0.5], [1.0], [4.0]]))
    assert out["spearman"] == pytest.approx(1.0)


# --------------------------------------------------------------------------
# NER


def test_conll_reader_and_first_subtoken_labels(tmp_path, tokenizer):
    path = _write(
        tmp_path / "train.txt",
        [
            "-DOCSTART- -X- -X- O",
            "",
            "John NNP B-NP B-PER",
            "played VBD B-VP O",
            "",
            "New NNP B-NP B-LOC",
            "York NNP I-NP I-LOC",
        ],
    )
    sentences = ner.read_conll(path)
    assert [(s.words, s.tags) for s in sentences] == [
        (["John", "played"], ["B-PER", "O"]),
        (["New", "York"], ["B-LOC", "I-LOC"]),
    ]
    labels = ner.label_list(sentences)
    assert labels == ["O", "B-LOC", "B-PER", "I-LOC"]
    feats = ner.encode(sentences[:1], tokenizer, 8, labels)
    # [CLS] john play ##ed [SEP]: the tag sits on "john" and on "play" only
    assert feats["input_ids"][0, :5].tolist() == [
        VOCAB.index(t) for t in ["[CLS]", "john", "play", "##ed", "[SEP]"]
    ]
    assert feats["labels"][0].tolist() == [-1, 2, 0, -1, -1, -1, -1, -1]
    assert feats["weights"][0].tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    logits = np.zeros((1, 8, 4))
    logits[0, 1, 2] = logits[0, 2, 0] = logits[0, 3, 3] = 1.0  # ##ed's prediction is ignored
    assert ner.word_predictions(logits, feats["first"], sentences[:1], labels) == [["B-PER", "O"]]


def test_conll_wrong_field_count_names_file_and_line(tmp_path):
    path = _write(tmp_path / "train.txt", ["John NNP B-NP B-PER", "played VBD O"])
    with pytest.raises(DataError, match=r"train.txt:2: 3 fields, expected 4"):
        ner.read_conll(path)


def test_conll_dev_tag_unknown_to_train_is_refused(tmp_path):
    dev = ner.read_conll(_write(tmp_path / "dev.txt", ["Paris B-LOC"]))
    with pytest.raises(DataError, match=r"dev.txt:1 has tag 'B-LOC'"):
        ner.check_tags(dev, ["O", "B-PER"], tmp_path / "dev.txt")


# --------------------------------------------------------------------------
# SQuAD

CONTEXT = "the cat sat on the mat . a dog ran . the big dog sat on a cat . john lives in new york ."


def _squad_file(tmp_path, answer_start, text="new york", impossible=False):
    import json

    qa = {
        "id": "q1",
        "question": "where john lives ?",
        "answers": [] if impossible else [{"text": text, "answer_start": answer_start}],
        "is_impossible": impossible,
    }
    other = {
        "id": "q2",
        "question": "who ran ?",
        "answers": [{"text": "a dog", "answer_start": CONTEXT.index("a dog")}],
    }
    data = {
        "version": "v2.0",
        "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": [qa, other]}]}],
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path


def test_windows_cover_a_long_context_and_locate_the_answer(tmp_path, tokenizer):
    examples, skipped = squad.read_squad(_squad_file(tmp_path, CONTEXT.index("new york")), is_training=True)
    assert skipped == 0 and (examples[0].start_word, examples[0].end_word) == (22, 23)
    windows = squad.make_windows(
        examples, tokenizer, max_seq_length=16, doc_stride=4, max_query_length=8, is_training=True
    )
    windows = [w for w in windows if w.example == 0]  # q1's
    # question "where john lives ?" is 4 pieces: 16 - 4 - 3 = 9 context tokens a window, 25 in all
    assert len(windows) == 5  # offsets 0, 4, 8, 12, 16 (16 + 9 >= 25 ends it)
    for w in windows:
        assert w.input_ids[0] == tokenizer.cls_id and w.segment_ids[:6].tolist() == [0] * 6
    holding = [w for w in windows if w.start > 0]
    assert len(holding) == 1  # only the last window (tokens 16-24) contains tokens 22-23
    for w in holding:
        assert [w.token_to_word[w.start], w.token_to_word[w.end]] == [22, 23]
        assert (w.start, w.end) == (4 + 2 + 22 - 16, 4 + 2 + 23 - 16)
    # every context token has exactly one best-context window
    counts = {}
    for w in windows:
        for pos, best in w.max_context.items():
            counts[w.token_to_word[pos]] = counts.get(w.token_to_word[pos], 0) + best
    assert set(counts.values()) == {1}


def test_decode_picks_the_best_valid_span_and_the_null_answer(tmp_path, tokenizer):
    examples, _ = squad.read_squad(_squad_file(tmp_path, CONTEXT.index("new york")), is_training=False)
    windows = squad.make_windows(examples, tokenizer, 16, 4, 8, is_training=False)
    start, end = np.full((len(windows), 16), -5.0), np.full((len(windows), 16), -5.0)
    w = 4  # q1's last window (windows 0-4 are q1's): words 16..24 at positions 6..14
    pos = {windows[w].token_to_word[p]: p for p in windows[w].token_to_word}
    start[w, pos[22]], end[w, pos[23]] = 3.0, 3.0
    end[w, pos[21]] = 9.0  # end before start: invalid
    examples, windows, start, end = examples[:1], windows[:5], start[:5], end[:5]  # q1's windows
    answers, _ = squad.decode(examples, windows, start, end, n_best_size=5, max_answer_length=5)
    assert answers == {"q1": "new york"}
    answers, _ = squad.decode(examples, windows, start, end, n_best_size=5, max_answer_length=1)
    assert answers["q1"] != "new york"  # two tokens exceed max_answer_length=1
    start[:, 0] = end[:, 0] = 4.0  # null score 8 > span score 6
    answers, odds = squad.decode(examples, windows, start, end, 5, 5, version_2=True)
    assert answers == {"q1": ""} and odds["q1"] == pytest.approx(2.0)
    answers, _ = squad.decode(
        examples, windows, start, end, 5, 5, version_2=True, null_score_diff_threshold=2.5
    )
    assert answers == {"q1": "new york"}


def test_answer_not_at_its_start_is_skipped_and_counted(tmp_path):
    examples, skipped = squad.read_squad(_squad_file(tmp_path, 3), is_training=True)  # " cat sat" there
    assert skipped == 1 and [e.qid for e in examples] == ["q2"]
    examples, skipped = squad.read_squad(_squad_file(tmp_path, 3), is_training=False)  # eval keeps all
    assert skipped == 0 and [e.qid for e in examples] == ["q1", "q2"]


def test_unanswerable_question_trains_on_cls(tmp_path, tokenizer):
    examples, _ = squad.read_squad(_squad_file(tmp_path, 0, impossible=True), is_training=True)
    windows = squad.make_windows(examples, tokenizer, 16, 4, 8, is_training=True)
    assert {(w.start, w.end) for w in windows if examples[w.example].qid == "q1"} == {(0, 0)}


def test_vocab_size_mismatch_is_refused(tokenizer):
    from bert_jax.finetune import trainer
    from bert_jax.model import ModelConfig

    cfg = ModelConfig(vocab_size=100, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    with pytest.raises(CheckpointError, match=rf"has vocab_size 100 but .*vocab.txt has {len(VOCAB)} tokens"):
        trainer.check_vocab(cfg, tokenizer, "ckpt")
