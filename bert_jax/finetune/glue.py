"""GLUE readers: the GLUE distribution's TSV folders, or TensorFlow Datasets.

TSV layout: `DATA_DIR/<Folder>/{train,dev,test}.tsv` (MNLI: `dev_matched.tsv`,
`dev_mismatched.tsv`, `test_matched.tsv`, `test_mismatched.tsv`), read
verbatim (tabs split, no quoting, as the GLUE distribution and the original
BERT's `run_classifier.py`). Columns are found by the header's names; CoLA's
train/dev files have no header (source, label, original label, sentence).
Every row must have as many fields as the header.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from bert_jax import features as bert_features
from bert_jax.errors import ConfigError, DataError
from bert_jax.finetune import files, metrics
from bert_jax.finetune.prepared import EvalSet, Prepared


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its files are, which columns hold what, its labels.

    `labels` is None for the regression task (STS-B). `metrics` names what
    `glue_metrics` reports; `primary` picks the best dev checkpoint.
    """

    name: str
    folder: str
    text_a: str
    text_b: str | None
    label: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    primary: str
    dev_splits: tuple[tuple[str, str], ...] = (("dev", "dev.tsv"),)
    test_files: tuple[str, ...] = ("test.tsv",)
    tfds_name: str = ""
    tfds_text: tuple[str, ...] = ()
    tfds_dev_splits: tuple[str, ...] = ("validation",)

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("contradiction", "entailment", "neutral")

# One row a task: name, folder, text_a column, text_b column, label column, labels, metrics, primary metric.
_TASK_ROWS: tuple[tuple[Any, ...], ...] = (
    ("cola", "CoLA", "sentence", None, "label", _BINARY, ("matthews_corr",), "matthews_corr"),
    ("sst2", "SST-2", "sentence", None, "label", _BINARY, ("accuracy",), "accuracy"),
    ("mrpc", "MRPC", "#1 String", "#2 String", "Quality", _BINARY, ("accuracy", "f1"), "f1"),
    ("stsb", "STS-B", "sentence1", "sentence2", "score", None, ("pearson", "spearman"), "pearson"),
    ("qqp", "QQP", "question1", "question2", "is_duplicate", _BINARY, ("accuracy", "f1"), "f1"),
    ("mnli", "MNLI", "sentence1", "sentence2", "gold_label", _NLI3, ("accuracy",), "accuracy"),
    ("qnli", "QNLI", "question", "sentence", "label", _NLI2, ("accuracy",), "accuracy"),
    ("rte", "RTE", "sentence1", "sentence2", "label", _NLI2, ("accuracy",), "accuracy"),
    ("wnli", "WNLI", "sentence1", "sentence2", "label", _BINARY, ("accuracy",), "accuracy"),
)
# TFDS names its text features like the TSV columns, except for these tasks.
_TFDS_TEXT = {"mrpc": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis")}
# MNLI has two dev sets (matched, mismatched) and two test files.
_MNLI_SPLITS: dict[str, Any] = dict(
    dev_splits=(("dev", "dev_matched.tsv"), ("dev_mismatched", "dev_mismatched.tsv")),
    test_files=("test_matched.tsv", "test_mismatched.tsv"),
    tfds_dev_splits=("validation_matched", "validation_mismatched"),
)


def _task(name: str, folder: str, text_a: str, text_b: str | None, *rest: Any) -> GlueTask:
    """The GlueTask of one `_TASK_ROWS` row; its TFDS dataset is `glue/<name>`."""
    tsv_text = (text_a,) if text_b is None else (text_a, text_b)
    return GlueTask(
        name,
        folder,
        text_a,
        text_b,
        *rest,
        tfds_name=f"glue/{name}",
        tfds_text=_TFDS_TEXT.get(name, tsv_text),
        **(_MNLI_SPLITS if name == "mnli" else {}),
    )


TASKS: dict[str, GlueTask] = {row[0]: _task(*row) for row in _TASK_ROWS}
PREDICTIONS_FILE = "predictions.tsv"
# CoLA's train/dev TSVs have no header row; these are their columns.
COLA_COLUMNS = ("source", "label", "original_label", "sentence")


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise ConfigError(f"config.task={name!r} is not a GLUE task; known: {', '.join(TASKS)}")
    return TASKS[key]


@dataclasses.dataclass(frozen=True)
class GlueExample:
    """One row: `guid` is `file:line`; `label` is the raw string (None in test files)."""

    guid: str
    text_a: str
    text_b: str | None
    label: str | None
    uid: str = ""  # the file's `index`/`id` column when it has one, else the line number


def read_tsv_rows(path: str | pathlib.Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) for every non-empty line of a TSV; raises
    DataError for a missing or empty file, a directory, or a line that is not UTF-8."""
    path = files.check_file(path, "data_dir must hold the GLUE folder layout (e.g. SST-2/train.tsv)")
    rows = [(i, line.rstrip("\r\n").split("\t")) for i, line in files.utf8_lines(path, newline="") if line.strip()]
    if not rows:
        raise DataError(f"{path} is empty; expected a header row and examples")
    return rows


def read_glue_file(task: GlueTask, path: str | pathlib.Path, with_labels: bool = True) -> list[GlueExample]:
    """Examples of one GLUE TSV. Test files (`with_labels=False`) need no label
    column; a row with another field count than the header is refused."""
    path = pathlib.Path(path)
    rows = read_tsv_rows(path)
    headerless = task.name == "cola" and len(rows[0][1]) == len(COLA_COLUMNS) and rows[0][1][0] != "index"
    header = list(COLA_COLUMNS) if headerless else rows[0][1]
    body = rows if headerless else rows[1:]
    wanted = [task.text_a] + ([task.text_b] if task.text_b else []) + ([task.label] if with_labels else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(
            f"{path}: header {header} lacks column(s) {missing}; is this the {task.folder} file of GLUE?"
        )
    col = {name: header.index(name) for name in wanted}
    id_column = next((c for c in ("index", "id") if c in header), None)
    examples = []
    for line, fields in body:
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{line}: {len(fields)} tab-separated fields, expected {len(header)} as the header "
                f"({', '.join(header)}); fix or drop that line"
            )
        label = fields[col[task.label]] if with_labels else None
        text_b = fields[col[task.text_b]] if task.text_b else None
        uid = fields[header.index(id_column)] if id_column else str(line)
        examples.append(GlueExample(f"{path.name}:{line}", fields[col[task.text_a]], text_b, label, uid))
    if not examples:
        raise DataError(f"{path} has a header but no examples")
    return examples


def label_ids(task: GlueTask, examples: Sequence[GlueExample], path: str, allowed: set[str] | None = None):
    """Labels as class ids (float scores for STS-B). `allowed` (the labels seen
    in train) refuses a dev label that training never saw."""
    if task.is_regression:
        try:
            return [float(e.label) for e in examples]
        except ValueError:
            bad = next(e for e in examples if not _is_float(e.label))
            raise DataError(
                f"{path}: row {bad.guid} has score {bad.label!r}; STS-B scores are numbers"
            ) from None
    index = {label: i for i, label in enumerate(task.labels)}
    for e in examples:
        if e.label not in index:
            raise DataError(
                f"{e.guid} in {path}: label {e.label!r} is not a {task.name} label; expected one of {list(task.labels)}"
            )
        if allowed is not None and e.label not in allowed:
            raise DataError(
                f"{e.guid} in {path}: label {e.label!r} never occurs in the training file (labels there: "
                f"{sorted(allowed)}); fix the file or train on data that has it"
            )
    return [index[e.label] for e in examples]


def _is_float(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def read_tfds_split(task: GlueTask, split: str, data_dir: str | None = None) -> list[GlueExample]:
    """Examples of a TensorFlow Datasets `glue/*` split (prepared under
    `data_dir`; nothing is downloaded). Labels become the TSV label strings."""
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(task.tfds_name, split=split, data_dir=data_dir, with_info=True, download=False)
    except Exception as e:  # tfds raises assorted errors for an unprepared dataset
        raise DataError(
            f"TFDS {task.tfds_name} split {split} is not prepared under {data_dir or 'the TFDS default dir'} "
            f"({type(e).__name__}); prepare it with tfds build or use the GLUE TSV folder"
        ) from None
    names = info.features["label"].names if not task.is_regression else None
    examples = []
    for i, row in enumerate(tfds.as_numpy(ds)):
        texts = [row[k].decode("utf-8") for k in task.tfds_text]
        label = row["label"]
        if task.is_regression:
            label = str(float(label))
        elif int(label) < 0:
            label = None  # test split: no label
        elif names[int(label)] in task.labels:
            label = names[int(label)]
        else:
            label = str(int(label))  # binary tasks: tfds class index == TSV label
        examples.append(
            GlueExample(
                f"{task.tfds_name}/{split}:{i}", texts[0], texts[1] if len(texts) > 1 else None, label
            )
        )
    return examples


# --------------------------------------------------------------------------
# Features and metrics


def encode(examples: Sequence[GlueExample], tokenizer, max_seq_length: int) -> dict[str, np.ndarray]:
    """`[CLS] a [SEP] (b [SEP])`, truncated (longer text first) and padded:
    `input_ids`, `input_mask`, `segment_ids`, each `[n, max_seq_length]` int32."""
    rows = [bert_features.Example(i, e.text_a, e.text_b) for i, e in enumerate(examples)]
    # RoBERTa-family tokenizers: `<s> a </s></s> b </s>`, one token type.
    double = getattr(tokenizer, "flavor", "") in bert_features.DOUBLE_SEPARATOR_FAMILIES
    feats = bert_features.convert_examples(rows, tokenizer, max_seq_length, double_separator=double)
    return {
        name: np.stack([getattr(f, name) for f in feats])
        for name in ("input_ids", "input_mask", "segment_ids")
    }


def with_targets(task: GlueTask, feats: dict[str, np.ndarray], labels: Sequence) -> dict[str, np.ndarray]:
    dtype = np.float32 if task.is_regression else np.int32
    return {**feats, "labels": np.asarray(labels, dtype), "weights": np.ones(len(labels), np.float32)}


def glue_metrics(task: GlueTask, labels: Sequence, logits: np.ndarray) -> dict[str, float]:
    """The task's metrics from `logits [n, num_labels]` (`[n, 1]` scores for STS-B)."""
    logits = np.asarray(logits)
    if task.is_regression:
        return metrics.pearson_spearman(labels, logits[:, 0])
    preds = logits.argmax(-1)
    out = {}
    if "accuracy" in task.metrics:
        out["accuracy"] = metrics.accuracy(labels, preds)
    if "f1" in task.metrics:
        out["f1"] = metrics.binary_f1(labels, preds)
    if "matthews_corr" in task.metrics:
        out["matthews_corr"] = metrics.matthews_corr(labels, preds)
    return out


def _task_dir(task: GlueTask, data_dir: str) -> pathlib.Path:
    if not data_dir:
        raise ConfigError(
            "config.data_dir is empty; point it at the GLUE folder (holding e.g. SST-2/train.tsv)"
        )
    return pathlib.Path(data_dir) / task.folder


def read_splits(
    config, task: GlueTask
) -> tuple[list[GlueExample], str, dict[str, tuple[list[GlueExample], str]]]:
    """(train examples, train source, {dev name: (examples, source)}) from TSV or TFDS."""
    if config.get("data_source", "tsv") == "tfds":
        data_dir = config.data_dir or None
        train = read_tfds_split(task, "train", data_dir)
        devs = {
            name: (read_tfds_split(task, split, data_dir), f"{task.tfds_name}/{split}")
            for (name, _), split in zip(task.dev_splits, task.tfds_dev_splits, strict=True)
        }
        return train, f"{task.tfds_name}/train", devs
    folder = _task_dir(task, config.data_dir)
    train = read_glue_file(task, folder / "train.tsv")
    devs = {name: (read_glue_file(task, folder / file), str(folder / file)) for name, file in task.dev_splits}
    return train, str(folder / "train.tsv"), devs


def prepare(config, tokenizer) -> Prepared:
    """Train features (the first `config.train_examples` rows when > 0) and
    the dev sets of a GLUE task."""
    task = get_task(config.task)
    train, train_source, devs = read_splits(config, task)
    if config.get("train_examples", 0):
        train = train[: config.train_examples]
    train_labels = label_ids(task, train, train_source)
    allowed = None if task.is_regression else {e.label for e in train}
    dev_sets = {}
    for name, (examples, source) in devs.items():
        labels = label_ids(task, examples, source, allowed)
        feats = with_targets(task, encode(examples, tokenizer, config.max_seq_length), labels)
        dev_sets[name] = EvalSet(feats, lambda out, labels=labels: glue_metrics(task, labels, out))
    head = "regression" if task.is_regression else "classification"
    train_feats = with_targets(task, encode(train, tokenizer, config.max_seq_length), train_labels)
    return Prepared(
        task.name, head, task.num_labels, list(task.labels or []) or None, train_feats, dev_sets, task.primary
    )


def predict_inputs(config, tokenizer, path: str) -> tuple[dict[str, np.ndarray], Any]:
    """Features of a GLUE test file (labels not needed) and the row ids."""
    task = get_task(config.task)
    examples = read_glue_file(task, path, with_labels=False)
    return encode(examples, tokenizer, config.max_seq_length), [e.uid for e in examples]


def write_predictions(config, outputs: np.ndarray, context: Any, labels: list[str] | None, out) -> None:
    """GLUE submission format: `index<TAB>prediction` (a label or an STS-B score)."""
    ids = context
    out.write("index\tprediction\n")
    logits = np.asarray(outputs)
    for uid, row in zip(ids, logits, strict=True):
        value = f"{row[0]:.3f}" if labels is None else labels[int(row.argmax())]
        out.write(f"{uid}\t{value}\n")
