"""XNLI: train on English MultiNLI, evaluate in 15 languages (the original
BERT's `run_classifier.py` XnliProcessor, all languages at once).

Local folders in the official releases' layout, unpacked into `data_dir`
either flat (as the original's `--data_dir`) or as released:

* dev/test: `xnli.dev.tsv`, `xnli.test.tsv` (or under `XNLI-1.0/`): a header
  naming `language`, `gold_label`, `sentence1`, `sentence2` (among others),
  one row per (pair, language).
* train: XNLI-MT's `multinli/multinli.train.<lang>.tsv` (or under
  `XNLI-MT-1.0/`; header `premise`, `hypo`, `label`), picked by
  `config.train_language`, or any `config.train_file` in that layout or in
  GLUE MNLI's (`sentence1`, `sentence2`, `gold_label`).

Files are read verbatim (tabs split, no quoting) and every row must have the
header's field count. Labels are contradiction/entailment/neutral; XNLI-MT's
"contradictory" reads as "contradiction" (as XnliProcessor). A dev/test row
whose language is not one of the 15 is skipped and counted in a warning, as
XnliProcessor skips every row not of its language.

TensorFlow Datasets (`data_source="tfds"`, prepared under `data_dir`; nothing
is downloaded): `xnli` validation/test, one example per pair holding all
languages, and `multi_nli` train (English).

Metrics: `accuracy_<lang>` per language and `accuracy`, their unweighted mean
over the languages evaluated (the average XNLI papers report; the official
files have 2490 dev / 5010 test pairs in every language, so it equals the
overall accuracy there).
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from bert_jax.errors import ConfigError, DataError
from bert_jax.finetune import files, glue, metrics
from bert_jax.finetune.prepared import EvalSet, Prepared

LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
LABELS = ("contradiction", "entailment", "neutral")
# XNLI-MT's training files spell one label differently.
LABEL_ALIASES = {"contradictory": "contradiction"}
PREDICTIONS_FILE = "predictions.tsv"
EVAL_FILES = {"dev": "xnli.dev.tsv", "test": "xnli.test.tsv"}
TFDS_SPLITS = {"dev": "validation", "test": "test"}
# (text_a, text_b, label) columns of the training-file layouts, by header names.
TRAIN_LAYOUTS = (("premise", "hypo", "label"), ("sentence1", "sentence2", "gold_label"))


@dataclasses.dataclass(frozen=True)
class XnliTask:
    name: str = "xnli"


def get_task(name: str) -> XnliTask:
    return XnliTask()


@dataclasses.dataclass(frozen=True)
class XnliExample:
    """One pair in one language: `guid` is `file:line` (TFDS: `xnli/<split>:<i>`),
    `label` the label string (None when the file has no label column),
    `uid` the file's `pairID` when it has one, else the line number."""

    guid: str
    language: str
    text_a: str
    text_b: str
    label: str | None
    uid: str = ""


# --------------------------------------------------------------------------
# TSV files


def read_table(path: pathlib.Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line, fields)]) of a TSV with a header row; DataError names
    the file (and line) of a missing file or a row of another field count."""
    files.check_file(path, "data_dir must hold the XNLI-1.0 / XNLI-MT-1.0 files")
    rows = glue.read_tsv_rows(path)
    header = rows[0][1]
    for line, fields in rows[1:]:
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{line}: {len(fields)} tab-separated fields, expected {len(header)} as the header "
                f"({', '.join(header)}); fix or drop that line"
            )
    if len(rows) == 1:
        raise DataError(f"{path} has a header but no examples")
    return header, rows[1:]


def _columns(path, header: list[str], columns: Sequence[str], optional: Sequence[str] = ()) -> dict[str, int]:
    """{column: index} of the named columns (optional ones where present)."""
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: header {header} lacks column(s) {missing}; is this an XNLI/MultiNLI file?")
    return {c: header.index(c) for c in [*columns, *optional] if c in header}


def read_train_file(path: str | pathlib.Path, language: str = "en") -> list[XnliExample]:
    """Training pairs of an XNLI-MT `multinli.train.<lang>.tsv` (premise, hypo,
    label) or a GLUE MNLI `train.tsv` (sentence1, sentence2, gold_label)."""
    path = pathlib.Path(path)
    header, rows = read_table(path)
    layout = next((cols for cols in TRAIN_LAYOUTS if all(c in header for c in cols)), None)
    if layout is None:
        raise DataError(
            f"{path}: header {header} has neither XNLI-MT's columns (premise, hypo, label) nor GLUE MNLI's "
            "(sentence1, sentence2, gold_label); pass a multinli.train.<lang>.tsv or MNLI train.tsv"
        )
    a, b, label = _columns(path, header, layout).values()
    return [
        XnliExample(f"{path.name}:{line}", language, f[a], f[b], _label(f[label]), str(line))
        for line, f in rows
    ]


def read_eval_file(
    path: str | pathlib.Path, languages: Sequence[str] = LANGUAGES, with_labels: bool = True
) -> list[XnliExample]:
    """Rows of `xnli.dev.tsv` / `xnli.test.tsv` in `languages`, in file order.
    Rows of a language outside the 15 are skipped with a counted warning."""
    path = pathlib.Path(path)
    header, rows = read_table(path)
    required = ["language", "sentence1", "sentence2"] + (["gold_label"] if with_labels else [])
    col = _columns(path, header, required, optional=("pairID",))
    examples, skipped = [], collections.Counter()
    for line, f in rows:
        language = f[col["language"]]
        if language not in LANGUAGES:
            skipped[language] += 1
            continue
        if language in languages:
            label = _label(f[col["gold_label"]]) if with_labels else None
            uid = f[col["pairID"]] if "pairID" in col else str(line)
            examples.append(
                XnliExample(
                    f"{path.name}:{line}", language, f[col["sentence1"]], f[col["sentence2"]], label, uid
                )
            )
    if skipped:
        logging.warning(
            "%s: skipped %d rows whose language is not an XNLI language (%s), as run_classifier's "
            "XnliProcessor does",
            path,
            sum(skipped.values()),
            ", ".join(f"{k!r}: {v}" for k, v in skipped.items()),
        )
    if not examples:
        raise DataError(f"{path}: no rows in the languages {', '.join(languages)}")
    return examples


def _label(text: str) -> str:
    return LABEL_ALIASES.get(text, text)


def label_ids(examples: Sequence[XnliExample]) -> list[int]:
    """Class ids in LABELS order; DataError names the row of an unknown label."""
    index = {label: i for i, label in enumerate(LABELS)}
    for e in examples:
        if e.label not in index:
            raise DataError(
                f"{e.guid}: label {e.label!r} is not an XNLI label; expected one of {list(LABELS)}"
            )
    return [index[e.label] for e in examples]


def _find(data_dir: str, names: Sequence[str]) -> pathlib.Path:
    """The first of `names` under `data_dir` that exists; DataError naming them all if none does."""
    if not data_dir:
        raise ConfigError("config.data_dir is empty; point it at the folder holding xnli.dev.tsv")
    paths = [pathlib.Path(data_dir) / name for name in names]
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        raise DataError(
            f"neither {' nor '.join(map(str, paths))} exists; unpack XNLI-1.0.zip / XNLI-MT-1.0.zip into "
            "config.data_dir (or set config.train_file)"
        )
    return found


def train_path(config) -> pathlib.Path:
    """config.train_file (relative to data_dir unless absolute), else XNLI-MT's
    multinli.train.<train_language>.tsv, flat or under XNLI-MT-1.0/."""
    if config.get("train_file"):
        return pathlib.Path(config.data_dir or ".") / config.train_file
    name = f"multinli/multinli.train.{config.get('train_language', 'en')}.tsv"
    return _find(config.data_dir, [name, f"XNLI-MT-1.0/{name}"])


def eval_path(config, split: str) -> pathlib.Path:
    """xnli.<split>.tsv, flat in data_dir or under XNLI-1.0/."""
    return _find(config.data_dir, [EVAL_FILES[split], f"XNLI-1.0/{EVAL_FILES[split]}"])


# --------------------------------------------------------------------------
# TensorFlow Datasets


def _tfds_load(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(name, split=split, data_dir=data_dir, with_info=True, download=False)
    except Exception as e:  # tfds raises assorted errors for an unprepared dataset
        raise DataError(
            f"TFDS {name} split {split} is not prepared under {data_dir or 'the TFDS default dir'} "
            f"({type(e).__name__}); prepare it with tfds build or use the XNLI TSV folder"
        ) from None
    return tfds.as_numpy(ds), info.features["label"].names


def read_tfds_train(data_dir: str | None = None) -> list[XnliExample]:
    """English MultiNLI training pairs from TFDS `multi_nli` train."""
    rows, names = _tfds_load("multi_nli", "train", data_dir)
    return [
        XnliExample(
            f"multi_nli/train:{i}", "en", _text(r["premise"]), _text(r["hypothesis"]), names[r["label"]]
        )
        for i, r in enumerate(rows)
    ]


def read_tfds_eval(split: str, data_dir: str | None = None, languages: Sequence[str] = LANGUAGES):
    """TFDS `xnli` validation/test: each pair once per language in `languages`
    (premise: {lang: text}; hypothesis: {"language": [...], "translation": [...]})."""
    rows, names = _tfds_load("xnli", split, data_dir)
    examples = []
    for i, r in enumerate(rows):
        hypotheses = dict(
            zip(map(_text, r["hypothesis"]["language"]), r["hypothesis"]["translation"], strict=True)
        )
        for language in languages:
            if language in r["premise"] and language in hypotheses:
                examples.append(
                    XnliExample(
                        f"xnli/{split}:{i}",
                        language,
                        _text(r["premise"][language]),
                        _text(hypotheses[language]),
                        names[r["label"]],
                        str(i),
                    )
                )
    if not examples:
        raise DataError(f"TFDS xnli/{split} has no pairs in the languages {', '.join(languages)}")
    return examples


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------
# Metrics and features


def xnli_metrics(languages: Sequence[str], labels: Sequence[int], logits: np.ndarray) -> dict[str, float]:
    """`accuracy_<lang>` for each language present (rows of `logits [n, 3]`
    in the order of `languages [n]` and `labels [n]`) and `accuracy`, the
    unweighted mean of those."""
    languages, labels = np.asarray(languages), np.asarray(labels)
    preds = np.asarray(logits).argmax(-1)
    out = {}
    for language in [x for x in LANGUAGES if x in set(languages.tolist())]:
        rows = languages == language
        out[f"accuracy_{language}"] = metrics.accuracy(labels[rows], preds[rows])
    out["accuracy"] = float(np.mean(list(out.values())))
    return out


def eval_languages(config) -> tuple[str, ...]:
    """config.languages (comma-separated) checked against the 15; "" = all."""
    wanted = tuple(x.strip() for x in (config.get("languages") or "").split(",") if x.strip())
    unknown = [x for x in wanted if x not in LANGUAGES]
    if unknown:
        raise ConfigError(
            f"config.languages has {unknown}, not XNLI languages; use some of {', '.join(LANGUAGES)}"
        )
    return wanted or LANGUAGES


def features(examples: Sequence[XnliExample], tokenizer, max_seq_length: int, labels=None):
    """GLUE's pair features `[n, max_seq_length]`, plus `labels`/`weights` `[n]` when given."""
    feats = glue.encode(examples, tokenizer, max_seq_length)
    if labels is None:
        return feats
    return {**feats, "labels": np.asarray(labels, np.int32), "weights": np.ones(len(labels), np.float32)}


def read_splits(config) -> tuple[list[XnliExample], dict[str, list[XnliExample]]]:
    """(train examples, {"dev": ..., "test": ... when config.eval_test})."""
    languages = eval_languages(config)
    splits = ["dev"] + (["test"] if config.get("eval_test") else [])
    if config.get("data_source", "tsv") == "tfds":
        data_dir = config.data_dir or None
        train = read_tfds_train(data_dir)
        return train, {s: read_tfds_eval(TFDS_SPLITS[s], data_dir, languages) for s in splits}
    train = read_train_file(train_path(config), config.get("train_language", "en"))
    return train, {s: read_eval_file(eval_path(config, s), languages) for s in splits}


def prepare(config, tokenizer) -> Prepared:
    """Train features (the first `config.train_examples` when > 0) and the
    per-language-scored dev (and test) sets."""
    train, evals = read_splits(config)
    if config.get("train_examples", 0):
        train = train[: config.train_examples]
    dev_sets = {}
    for name, examples in evals.items():
        labels = label_ids(examples)
        languages = [e.language for e in examples]
        feats = features(examples, tokenizer, config.max_seq_length, labels)
        dev_sets[name] = EvalSet(
            feats, lambda out, languages=languages, labels=labels: xnli_metrics(languages, labels, out)
        )
    train_feats = features(train, tokenizer, config.max_seq_length, label_ids(train))
    return Prepared("xnli", "classification", len(LABELS), list(LABELS), train_feats, dev_sets, "accuracy")


def predict_inputs(config, tokenizer, path: str) -> tuple[dict[str, np.ndarray], Any]:
    """Features of an XNLI-layout file (no label needed) and its examples."""
    examples = read_eval_file(path, eval_languages(config), with_labels=False)
    return features(examples, tokenizer, config.max_seq_length), examples


def write_predictions(config, outputs: np.ndarray, context: Any, labels: list[str] | None, out) -> None:
    """`index<TAB>language<TAB>prediction` per row (index: the pairID, else the line)."""
    out.write("index\tlanguage\tprediction\n")
    for example, row in zip(context, np.asarray(outputs), strict=True):
        out.write(f"{example.uid}\t{example.language}\t{labels[int(row.argmax())]}\n")
