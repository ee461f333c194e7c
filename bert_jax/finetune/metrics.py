"""Dev-set metrics under their usual names, from maintained implementations.

GLUE: scikit-learn (accuracy, F1 of the positive class, Matthews correlation)
and SciPy (Pearson, Spearman). NER: seqeval's default (conlleval-like,
non-strict) entity-level precision/recall/F1. SQuAD: the official v1.1/v2.0
script's normalisation and EM/F1 (there is no maintained package for it).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics
from seqeval import metrics as seqeval_metrics


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Fraction of `preds` equal to `labels` (both `[n]` class ids)."""
    return float(sklearn.metrics.accuracy_score(labels, preds))


def binary_f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """F1 of class 1 (MRPC's "equivalent", QQP's "duplicate")."""
    return float(sklearn.metrics.f1_score(labels, preds, pos_label=1, average="binary", zero_division=0))


def matthews_corr(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Matthews correlation coefficient (CoLA); 0 when a class is never predicted."""
    return float(sklearn.metrics.matthews_corrcoef(labels, preds))


def pearson_spearman(labels: Sequence[float], preds: Sequence[float]) -> dict[str, float]:
    """STS-B: Pearson and Spearman correlation of the predicted scores."""
    return {
        "pearson": float(scipy.stats.pearsonr(labels, preds)[0]),
        "spearman": float(scipy.stats.spearmanr(labels, preds)[0]),
    }


def entity_scores(labels: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision/recall/F1 over BIO/IOB2 tag sequences (seqeval
    default mode: an I- without a B- opens an entity, as conlleval), plus
    token accuracy."""
    return {
        "precision": float(seqeval_metrics.precision_score(labels, preds, zero_division=0)),
        "recall": float(seqeval_metrics.recall_score(labels, preds, zero_division=0)),
        "f1": float(seqeval_metrics.f1_score(labels, preds, zero_division=0)),
        "accuracy": float(seqeval_metrics.accuracy_score(labels, preds)),
    }


# --------------------------------------------------------------------------
# SQuAD (the official evaluate-v2.0.py, which v1.1's agrees with on answerable
# questions)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def token_f1(gold: str, pred: str) -> float:
    """Bag-of-tokens F1 of the normalised answers; an empty (no-answer) gold
    or prediction scores 1 only when both are empty."""
    gold_tokens = normalize_answer(gold).split()
    pred_tokens = normalize_answer(pred).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(golds: Mapping[str, Sequence[str]], preds: Mapping[str, str]) -> dict[str, float]:
    """Official EM and F1 in percent: per question the max over its gold
    answers (an unanswerable question's only gold is ""); a question without a
    prediction scores 0. For v2.0 sets also HasAns_*/NoAns_* splits."""
    em, f1 = {}, {}
    for qid, answers in golds.items():
        answers = [a for a in answers if normalize_answer(a)] or [""]
        pred = preds.get(qid)
        em[qid] = 0.0 if pred is None else max(exact_match(a, pred) for a in answers)
        f1[qid] = 0.0 if pred is None else max(token_f1(a, pred) for a in answers)
    scores = _mean_scores(em, f1, list(golds))
    has_ans = [q for q, a in golds.items() if any(normalize_answer(x) for x in a)]
    no_ans = [q for q in golds if q not in set(has_ans)]
    if no_ans:
        for name, ids in (("HasAns", has_ans), ("NoAns", no_ans)):
            if ids:
                part = _mean_scores(em, f1, ids)
                scores[f"{name}_exact_match"], scores[f"{name}_f1"] = part["exact_match"], part["f1"]
    return scores


def _mean_scores(em: Mapping[str, float], f1: Mapping[str, float], ids: Sequence[str]) -> dict[str, float]:
    return {
        "exact_match": 100.0 * float(np.mean([em[q] for q in ids])) if ids else 0.0,
        "f1": 100.0 * float(np.mean([f1[q] for q in ids])) if ids else 0.0,
    }
