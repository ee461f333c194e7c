"""Token classification on CoNLL-2003-style files (BIO / IOB2 tags).

A file has one token per line, whitespace-separated fields with the word
first and the tag last (CoNLL-2003: `word POS chunk NER`), a blank line
between sentences and `-DOCSTART-` lines between documents. Every token line
of a file must have the field count of its first. Each word is tokenized as
the sentence's running text has it (any tokenizer kind: byte-level BPE's
pieces keep the space before every word but the first); its tag is learned and predicted on its first
sub-token only (the others carry weight 0). Words cut off by
`max_seq_length` are predicted "O" (CoNLL sentences rarely reach it).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from bert_jax.errors import ConfigError, DataError
from bert_jax.finetune import files, metrics
from bert_jax.finetune.prepared import EvalSet, Prepared

PREDICTIONS_FILE = "predictions.txt"


@dataclasses.dataclass(frozen=True)
class NerTask:
    name: str = "ner"


def get_task(name: str) -> NerTask:
    return NerTask()


@dataclasses.dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    where: str  # file:line of its first token


def read_conll(path: str | pathlib.Path) -> list[Sentence]:
    """Sentences of a CoNLL file; DataError names the file and line of a bad row."""
    path = files.check_file(path, "pass a CoNLL-2003 format file")
    sentences, words, tags, where, fields_per_line = [], [], [], "", None
    for line_no, line in files.utf8_lines(path):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append(Sentence(words, tags, where))
            words, tags = [], []
            continue
        if fields_per_line is None:
            if len(fields) < 2:
                raise DataError(
                    f"{path}:{line_no}: one field; expected `word ... tag` (at least 2 fields)"
                )
            fields_per_line = len(fields)
        if len(fields) != fields_per_line:
            raise DataError(
                f"{path}:{line_no}: {len(fields)} fields, expected {fields_per_line} as the file's first "
                "token line (word ... tag); fix that line"
            )
        if not words:
            where = f"{path}:{line_no}"
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        sentences.append(Sentence(words, tags, where))
    if not sentences:
        raise DataError(f"{path} holds no sentences")
    return sentences


def label_list(train: Sequence[Sentence]) -> list[str]:
    """The training tags, "O" first, then sorted."""
    tags = {t for s in train for t in s.tags}
    return (["O"] if "O" in tags else []) + sorted(tags - {"O"})


def check_tags(sentences: Sequence[Sentence], labels: Sequence[str], path) -> None:
    known = set(labels)
    for s in sentences:
        for t in s.tags:
            if t not in known:
                raise DataError(
                    f"{path}: sentence at {s.where} has tag {t!r} that the training file never has "
                    f"(tags there: {sorted(known)})"
                )


def encode(sentences: Sequence[Sentence], tokenizer, max_seq_length: int, labels: Sequence[str] | None):
    """`[CLS] pieces [SEP]` (the tokenizer's own specials) per sentence; `labels [n, seq]` = the word's tag id
    on its first sub-token, -1 elsewhere, `weights` 1 where labelled, and
    `first [n, seq]` = the index of the word starting there (-1 elsewhere)."""
    index = {t: i for i, t in enumerate(labels or [])}
    n = len(sentences)
    out = {k: np.zeros((n, max_seq_length), np.int32) for k in ("input_ids", "input_mask", "segment_ids")}
    out["labels"] = np.full((n, max_seq_length), -1, np.int32)
    out["weights"] = np.zeros((n, max_seq_length), np.float32)
    out["first"] = np.full((n, max_seq_length), -1, np.int32)
    flat = tokenizer.tokenize_words(
        [w for s in sentences for w in s.words], [w > 0 for s in sentences for w in range(len(s.words))]
    )
    k = 0
    for i, s in enumerate(sentences):
        ids, pos = [tokenizer.cls_id], 1
        for w, tag in enumerate(s.tags):
            pieces = list(flat[k + w]) or [tokenizer.unk_token]
            if pos + len(pieces) > max_seq_length - 1:
                break
            if labels is not None:
                out["labels"][i, pos] = index[tag]
                out["weights"][i, pos] = 1.0
            out["first"][i, pos] = w
            ids += tokenizer.convert_tokens_to_ids(pieces)
            pos += len(pieces)
        k += len(s.words)
        ids.append(tokenizer.sep_id)
        out["input_ids"][i, : len(ids)] = ids
        out["input_ids"][i, len(ids) :] = tokenizer.pad_id
        out["input_mask"][i, : len(ids)] = 1
    return out


def word_predictions(
    logits: np.ndarray, first: np.ndarray, sentences: Sequence[Sentence], labels
) -> list[list[str]]:
    """One tag per word from `logits [n, seq, labels]` at first sub-tokens; "O" for cut-off words."""
    preds = []
    best = np.asarray(logits).argmax(-1)
    for i, s in enumerate(sentences):
        tags = ["O"] * len(s.words)
        for pos in np.nonzero(first[i] >= 0)[0]:
            tags[first[i, pos]] = labels[best[i, pos]]
        preds.append(tags)
    return preds


def _files(config) -> tuple[pathlib.Path, pathlib.Path]:
    if not config.data_dir:
        raise ConfigError("config.data_dir is empty; point it at the folder with the CoNLL train/dev files")
    folder = pathlib.Path(config.data_dir)
    return folder / config.train_file, folder / config.dev_file


def prepare(config, tokenizer) -> Prepared:
    train_path, dev_path = _files(config)
    train = read_conll(train_path)
    if config.get("train_examples", 0):
        train = train[: config.train_examples]
    labels = label_list(train)
    dev = read_conll(dev_path)
    check_tags(dev, labels, dev_path)
    dev_feats = encode(dev, tokenizer, config.max_seq_length, labels)
    first = dev_feats.pop("first")
    gold = [s.tags for s in dev]

    def score(logits):
        return metrics.entity_scores(gold, word_predictions(logits, first, dev, labels))

    train_feats = encode(train, tokenizer, config.max_seq_length, labels)
    train_feats.pop("first")
    return Prepared(
        "ner", "token", len(labels), labels, train_feats, {"dev": EvalSet(dev_feats, score)}, "f1"
    )


def predict_inputs(config, tokenizer, path: str) -> tuple[dict[str, np.ndarray], Any]:
    sentences = read_conll(path)
    feats = encode(sentences, tokenizer, config.max_seq_length, None)
    return feats, (sentences, feats.pop("first"))


def write_predictions(config, outputs, context, labels, out) -> None:
    """CoNLL layout: `word<SPACE>predicted tag` per line, a blank line between sentences."""
    sentences, first = context
    for s, tags in zip(sentences, word_predictions(outputs, first, sentences, labels), strict=True):
        for word, tag in zip(s.words, tags, strict=True):
            out.write(f"{word} {tag}\n")
        out.write("\n")
