"""BERTScore (Zhang et al. 2020) over any checkpoint bert-jax reads, equal to the
`bert-score` package (0.3.13) given the same model folder and layer.

What the reference does, and so what this does:

* A sentence is stripped and encoded as `[CLS] sentence [SEP]`, truncated to
  the model's length (`embeddings.usable_length`): the sentence's tokens past
  `length - 2` are dropped, so only its beginning is scored.
* Token states are the output of encoder layer `layer` (1-based; 0 is the
  embeddings), the reference's `num_layers`; each is L2-normalised.
* Precision: every candidate token's best cosine against the reference's
  tokens ([CLS]/[SEP] included as matches), averaged with weights; recall the
  same the other way; F1 = 2PR/(P+R) (0 where that is NaN). Weights are 1 per
  token, 0 for [CLS]/[SEP]; with idf, log((M+1)/(df+1)) where df counts the M
  references holding the token (a token no reference holds gets log(M+1)),
  normalised to sum 1 per sentence. A sentence with no tokens scores 0.
* Several references per candidate: each of P, R and F1 is the best over them.
* A baseline file (`LAYER,P,R,F`, one row per layer, layer 0 the embeddings)
  rescales x -> (x - b) / (1 - b), after the best-of-references.

* Its padding quirk, kept for equality: pairs are matched in batches of
  `batch_size` (in input order, a candidate's several references one after
  the other), each side padded to the batch's longest sentence, and a padded
  position's cosine counts as 0. So a token whose cosines are all negative
  scores 0, not its best cosine, when the other side is shorter than the
  longest one in its batch. Scores can therefore depend on --batch_size where
  cosines go negative (all-MiniLM-L6-v2 on unrelated sentences does), exactly
  as the reference's do.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import pathlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from bert_jax import atomic
from bert_jax.embeddings import LayerEncoder, with_specials
from bert_jax.errors import UserError
from bert_jax.model import ModelConfig

# bert_score's recommended layer per model name (its utils.model2layers, v0.3.13).
MODEL2LAYERS = {
    "bert-base-uncased": 9,
    "bert-large-uncased": 18,
    "bert-base-cased-finetuned-mrpc": 9,
    "bert-base-multilingual-cased": 9,
    "bert-base-chinese": 8,
    "roberta-base": 10,
    "roberta-large": 17,
    "roberta-large-mnli": 19,
    "roberta-base-openai-detector": 7,
    "roberta-large-openai-detector": 15,
    "xlnet-base-cased": 5,
    "xlnet-large-cased": 7,
    "xlm-mlm-en-2048": 6,
    "xlm-mlm-100-1280": 10,
    "scibert-scivocab-uncased": 8,
    "scibert-scivocab-cased": 9,
    "scibert-basevocab-uncased": 9,
    "scibert-basevocab-cased": 9,
    "allenai/scibert_scivocab_uncased": 8,
    "allenai/scibert_scivocab_cased": 9,
    "nfliu/scibert_basevocab_uncased": 9,
    "distilroberta-base": 5,
    "distilbert-base-uncased": 5,
    "distilbert-base-uncased-distilled-squad": 4,
    "distilbert-base-multilingual-cased": 5,
    "albert-base-v1": 10,
    "albert-large-v1": 17,
    "albert-xlarge-v1": 16,
    "albert-xxlarge-v1": 8,
    "albert-base-v2": 9,
    "albert-large-v2": 14,
    "albert-xlarge-v2": 13,
    "albert-xxlarge-v2": 8,
    "xlm-roberta-base": 9,
    "xlm-roberta-large": 17,
    "google/electra-small-generator": 9,
    "google/electra-small-discriminator": 11,
    "google/electra-base-generator": 10,
    "google/electra-base-discriminator": 9,
    "google/electra-large-generator": 18,
    "google/electra-large-discriminator": 14,
    "google/bert_uncased_L-2_H-128_A-2": 1,
    "google/bert_uncased_L-2_H-256_A-4": 1,
    "google/bert_uncased_L-2_H-512_A-8": 1,
    "google/bert_uncased_L-2_H-768_A-12": 2,
    "google/bert_uncased_L-4_H-128_A-2": 3,
    "google/bert_uncased_L-4_H-256_A-4": 3,
    "google/bert_uncased_L-4_H-512_A-8": 3,
    "google/bert_uncased_L-4_H-768_A-12": 3,
    "google/bert_uncased_L-6_H-128_A-2": 5,
    "google/bert_uncased_L-6_H-256_A-4": 5,
    "google/bert_uncased_L-6_H-512_A-8": 5,
    "google/bert_uncased_L-6_H-768_A-12": 5,
    "google/bert_uncased_L-8_H-128_A-2": 7,
    "google/bert_uncased_L-8_H-256_A-4": 7,
    "google/bert_uncased_L-8_H-512_A-8": 6,
    "google/bert_uncased_L-8_H-768_A-12": 7,
    "google/bert_uncased_L-10_H-128_A-2": 8,
    "google/bert_uncased_L-10_H-256_A-4": 8,
    "google/bert_uncased_L-10_H-512_A-8": 9,
    "google/bert_uncased_L-10_H-768_A-12": 8,
    "google/bert_uncased_L-12_H-128_A-2": 10,
    "google/bert_uncased_L-12_H-256_A-4": 11,
    "google/bert_uncased_L-12_H-512_A-8": 10,
    "google/bert_uncased_L-12_H-768_A-12": 9,
    "amazon/bort": 0,
    "facebook/bart-base": 6,
    "facebook/bart-large": 10,
    "facebook/bart-large-cnn": 10,
    "facebook/bart-large-mnli": 11,
    "facebook/bart-large-xsum": 9,
    "t5-small": 6,
    "t5-base": 11,
    "t5-large": 23,
    "vinai/bertweet-base": 9,
    "microsoft/deberta-base": 9,
    "microsoft/deberta-base-mnli": 9,
    "microsoft/deberta-large": 16,
    "microsoft/deberta-large-mnli": 18,
    "microsoft/deberta-xlarge": 18,
    "microsoft/deberta-xlarge-mnli": 40,
    "YituTech/conv-bert-base": 10,
    "YituTech/conv-bert-small": 10,
    "YituTech/conv-bert-medium-small": 9,
    "microsoft/mpnet-base": 8,
    "squeezebert/squeezebert-uncased": 9,
    "squeezebert/squeezebert-mnli": 9,
    "squeezebert/squeezebert-mnli-headless": 9,
    "tuner007/pegasus_paraphrase": 15,
    "google/pegasus-large": 8,
    "google/pegasus-xsum": 11,
    "sshleifer/tiny-mbart": 2,
    "facebook/mbart-large-cc25": 12,
    "facebook/mbart-large-50": 12,
    "facebook/mbart-large-en-ro": 12,
    "facebook/mbart-large-50-many-to-many-mmt": 12,
    "facebook/mbart-large-50-one-to-many-mmt": 12,
    "allenai/led-base-16384": 6,
    "facebook/blenderbot_small-90M": 7,
    "facebook/blenderbot-400M-distill": 2,
    "microsoft/prophetnet-large-uncased": 4,
    "microsoft/prophetnet-large-uncased-cnndm": 7,
    "SpanBERT/spanbert-base-cased": 8,
    "SpanBERT/spanbert-large-cased": 17,
    "microsoft/xprophetnet-large-wiki100-cased": 7,
    "ProsusAI/finbert": 10,
    "Vamsi/T5_Paraphrase_Paws": 12,
    "ramsrigouthamg/t5_paraphraser": 11,
    "microsoft/deberta-v2-xlarge": 10,
    "microsoft/deberta-v2-xlarge-mnli": 17,
    "microsoft/deberta-v2-xxlarge": 21,
    "microsoft/deberta-v2-xxlarge-mnli": 22,
    "allenai/longformer-base-4096": 7,
    "allenai/longformer-large-4096": 14,
    "allenai/longformer-large-4096-finetuned-triviaqa": 14,
    "zhiheng-huang/bert-base-uncased-embedding-relative-key": 4,
    "zhiheng-huang/bert-base-uncased-embedding-relative-key-query": 7,
    "zhiheng-huang/bert-large-uncased-whole-word-masking-embedding-relative-key-query": 19,
    "google/mt5-small": 8,
    "google/mt5-base": 11,
    "google/mt5-large": 19,
    "google/mt5-xl": 24,
    "google/bigbird-roberta-base": 10,
    "google/bigbird-roberta-large": 14,
    "google/bigbird-base-trivia-itc": 8,
    "princeton-nlp/unsup-simcse-bert-base-uncased": 10,
    "princeton-nlp/unsup-simcse-bert-large-uncased": 18,
    "princeton-nlp/unsup-simcse-roberta-base": 8,
    "princeton-nlp/unsup-simcse-roberta-large": 13,
    "princeton-nlp/sup-simcse-bert-base-uncased": 10,
    "princeton-nlp/sup-simcse-bert-large-uncased": 18,
    "princeton-nlp/sup-simcse-roberta-base": 10,
    "princeton-nlp/sup-simcse-roberta-large": 16,
    "dbmdz/bert-base-turkish-cased": 10,
    "dbmdz/distilbert-base-turkish-cased": 4,
    "google/byt5-small": 1,
    "google/byt5-base": 17,
    "google/byt5-large": 30,
    "microsoft/deberta-v3-xsmall": 10,
    "microsoft/deberta-v3-small": 4,
    "microsoft/deberta-v3-base": 9,
    "microsoft/mdeberta-v3-base": 10,
    "microsoft/deberta-v3-large": 12,
    "khalidalt/DeBERTa-v3-large-mnli": 18,}


def default_layer(cfg: ModelConfig, meta: dict) -> tuple[int, str]:
    """(layer, why): the reference's recommended layer for the model's name (its
    Hugging Face config.json `_name_or_path`, else the folder's name), else the last."""
    names = []
    folder = pathlib.Path(meta.get("path") or "")
    config = folder / "config.json"
    if config.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no name: the folder's
            names.append(str(json.loads(config.read_text(encoding="utf-8")).get("_name_or_path") or ""))
    names.append(folder.name)
    for name in names:
        if name in MODEL2LAYERS and MODEL2LAYERS[name] <= cfg.num_layers:
            return MODEL2LAYERS[name], f"bert_score's recommended layer for {name}"
    return cfg.num_layers, "the last layer"


def check_sentences(lines: Sequence[str], source: str) -> list[str]:
    """The lines, each stripped; an empty one is refused, naming `source` and its line."""
    out = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            raise UserError(f"{source}, line {number}: empty line where a sentence is needed; remove it "
                            "or put a sentence there (every line is one sentence)")
        out.append(text)
    return out


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per-candidate precision, recall and F1, each `[N]` float64."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def rescaled(self, baseline: np.ndarray) -> Scores:
        """(x - b) / (1 - b) with `baseline` = (P, R, F) for the layer used."""
        p, r, f = (np.asarray(x, np.float64) for x in baseline)
        return Scores((self.precision - p) / (1 - p), (self.recall - r) / (1 - r), (self.f1 - f) / (1 - f))


def idf_weights(ref_ids: Sequence[Sequence[int]]) -> tuple[dict[int, float], float]:
    """({token: log((M+1)/(df+1))}, log(M+1) for tokens no reference holds), over M references."""
    df = Counter(token for ids in ref_ids for token in set(ids))
    m = len(ref_ids)
    return {token: math.log((m + 1) / (count + 1)) for token, count in df.items()}, math.log(m + 1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def greedy_match(
    cand: np.ndarray, ref: np.ndarray, cand_w: np.ndarray, ref_w: np.ndarray, ref_padded: bool = False,
    cand_padded: bool = False,
) -> tuple[float, float, float]:
    """(P, R, F1) of one pair: `cand [m, d]`, `ref [n, d]` unit token states with
    their weights. `ref_padded`: the reference's batch padded this pair's
    reference, so a candidate token's best cosine is at least 0 (and the same for
    `cand_padded` and the recall)."""
    if len(cand) <= 2 or len(ref) <= 2:  # [CLS] [SEP] only: the reference scores 0
        return 0.0, 0.0, 0.0
    sim = cand @ ref.T
    best_p, best_r = sim.max(axis=1), sim.max(axis=0)
    if ref_padded:
        best_p = np.maximum(best_p, 0.0)
    if cand_padded:
        best_r = np.maximum(best_r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = float((best_p * cand_w).sum() / cand_w.sum())
        r = float((best_r * ref_w).sum() / ref_w.sum())
    f = 2 * p * r / (p + r) if p + r != 0 else math.nan
    return p, r, 0.0 if math.isnan(f) else f  # the reference's NaN F1 (0/0) is 0


class BertScorer:
    """BERTScore with one model, tokenizer and layer (`layer=None`: every layer,
    0 to N, for making a baseline)."""

    def __init__(self, cfg: ModelConfig, params, tokenizer, layer: int | None, max_length: int, batch_size: int = 64):
        self.tokenizer, self.max_length, self.layer = tokenizer, max_length, layer
        self.encoder = LayerEncoder(cfg, params, layer, max_length, batch_size)
        self.specials = {tokenizer.cls_id, tokenizer.sep_id}

    def score(self, candidates: Sequence[str], references: Sequence[Sequence[str]], idf: bool = False) -> Scores:
        """`references[i]`: the references of candidate i (the best one counts).
        With `layer=None` each field is `[layers + 1, N]`."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference groups")
        flat_refs = [r for group in references for r in group]
        unique = sorted(set(candidates) | set(flat_refs))
        ids = dict(zip(unique, with_specials(self.tokenizer, unique, self.max_length), strict=True))
        states = {s: _unit_rows(x) for s, x in zip(unique, self.encoder([ids[s] for s in unique]), strict=True)}
        if idf:
            table, unseen = idf_weights([ids[r] for r in flat_refs])
            weights = {s: np.array([table.get(t, unseen) for t in ids[s]], np.float64) for s in unique}
        else:
            weights = {s: np.array([0.0 if t in self.specials else 1.0 for t in ids[s]]) for s in unique}
        pairs = [(cand, ref) for cand, group in zip(candidates, references, strict=True) for ref in group]
        padded = _padded_in_batch([(len(ids[c]), len(ids[r])) for c, r in pairs], self.encoder.batch_size)
        flat = [self._pair(states[c], states[r], weights[c], weights[r], *pad)
                for (c, r), pad in zip(pairs, padded, strict=True)]
        rows, start = [], 0
        for group in references:
            rows.append(np.max(np.asarray(flat[start : start + len(group)]), axis=0))  # each of P, R, F1: the best
            start += len(group)
        out = np.moveaxis(np.asarray(rows, np.float64), -1, 0)  # [3, N] or [3, N, layers + 1]
        if self.layer is None:
            out = np.moveaxis(out, -1, 1)  # [3, layers + 1, N]
        return Scores(*out)

    def _pair(self, cand, ref, cand_w, ref_w, ref_padded, cand_padded):
        if self.layer is not None:
            return greedy_match(cand, ref, cand_w, ref_w, ref_padded, cand_padded)
        return np.array([greedy_match(c, r, cand_w, ref_w, ref_padded, cand_padded)
                         for c, r in zip(cand, ref, strict=True)])


def _padded_in_batch(lengths: Sequence[tuple[int, int]], batch_size: int) -> list[tuple[bool, bool]]:
    """Per (candidate, reference) token count: (reference padded, candidate padded)
    in the reference's batches of `batch_size` pairs."""
    out = []
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        longest_cand, longest_ref = max(c for c, _ in batch), max(r for _, r in batch)
        out += [(r < longest_ref, c < longest_cand) for c, r in batch]
    return out


# --------------------------------------------------------------- baselines


BASELINE_HEADER = ["LAYER", "P", "R", "F"]


def model_fingerprint(cfg: ModelConfig, params) -> str:
    """A short hash of the model's sizes and embedding tables: which model a baseline is for."""
    from bert_jax import checkpoints

    digest = hashlib.sha256(f"{cfg.num_layers}/{cfg.hidden_size}/{cfg.vocab_size}".encode())
    for path, value in sorted(checkpoints.flatten_params(params["bert"]["embeddings"]).items()):
        digest.update("/".join(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(value, np.float32)).tobytes())
    return digest.hexdigest()[:16]


def baseline_pairs(lines: Sequence[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """The authors' recipe (bert_score's get_rescale_baseline.py): the first
    million lines, stripped, those with fewer than 32 space-separated words (and
    not empty), paired at random without repeats into len // 2 pairs."""
    kept = [t for t in (line.strip() for line in lines[:1_000_000]) if t and len(t.split(" ")) < 32]
    if len(kept) < 2:
        raise UserError(f"{len(kept)} usable lines; a baseline needs at least 2 (lines of under 32 words)")
    picks = rng.choice(len(kept), size=(2, len(kept) // 2), replace=False)
    return [kept[i] for i in picks[0]], [kept[i] for i in picks[1]]


def make_baseline(scorer: BertScorer, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """`[layers + 1, 3]`: the mean P, R, F1 of unrelated pairs at every layer (no idf)."""
    scores = scorer.score(candidates, [[r] for r in references])
    return np.stack([scores.precision.mean(-1), scores.recall.mean(-1), scores.f1.mean(-1)], axis=-1)


def sidecar(path: str | pathlib.Path) -> pathlib.Path:
    """Where bert-jax notes which model a baseline file is for (the file itself
    keeps the reference's plain LAYER,P,R,F format)."""
    return pathlib.Path(f"{path}.json")


def write_baseline(path: str | pathlib.Path, table: np.ndarray, fingerprint: str, checkpoint: str) -> None:
    """`table [layers + 1, 3]` as bert_score's LAYER,P,R,F csv, and the model it is
    for beside it; each file complete or as it was (bert_jax.atomic)."""
    lines = [",".join(BASELINE_HEADER)]
    lines += [f"{layer},{p:.8f},{r:.8f},{f:.8f}" for layer, (p, r, f) in enumerate(table)]
    atomic.write_text(sidecar(path), json.dumps({"model": fingerprint, "checkpoint": checkpoint}) + "\n")
    atomic.write_text(path, "\n".join(lines) + "\n")


def read_baseline(path: str | pathlib.Path, layer: int, num_layers: int, fingerprint: str) -> np.ndarray:
    """(P, R, F) of `layer` from a baseline file in the reference's format; a file
    for a model with other layers, or (by its bert-jax note) another model, or
    without the layer's row, is refused."""
    path = pathlib.Path(path)
    rows = _baseline_rows(path)
    deepest = max(rows)
    if deepest != num_layers:
        raise UserError(
            f"--baseline={path} has rows for layers 0..{deepest} but this model has {num_layers} layers: it is a "
            "baseline for another model; make one for this model with --make_baseline"
        )
    note = sidecar(path)
    if note.is_file():
        try:
            made_for = json.loads(note.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):
            made_for = None
        if made_for and made_for != fingerprint:
            raise UserError(
                f"--baseline={path} was made for another model (fingerprint {made_for}, this one is "
                f"{fingerprint}, per {note}); make one for this model with --make_baseline"
            )
    if layer not in rows:
        raise UserError(
            f"--baseline={path} has no row for layer {layer} (it has layers {sorted(rows)}); make one at "
            "this layer with --make_baseline"
        )
    return rows[layer]


def _baseline_rows(path: pathlib.Path) -> dict[int, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--baseline={path} cannot be read ({e}); pass a LAYER,P,R,F csv file") from None
    if not table or [c.strip() for c in table[0]] != BASELINE_HEADER:
        raise UserError(f"--baseline={path}: the first line must be LAYER,P,R,F (bert_score's baseline format)")
    rows = {}
    for number, row in enumerate(table[1:], 2):
        try:
            layer, *values = int(row[0]), *(float(x) for x in row[1:4])
            if len(row) != 4:
                raise ValueError
        except (ValueError, IndexError):
            raise UserError(f"--baseline={path}, line {number}: expected LAYER,P,R,F numbers, got {row}") from None
        if any(not v < 1 for v in values):
            raise UserError(f"--baseline={path}, line {number}: a baseline of 1 or more cannot rescale; "
                            "make a new one with --make_baseline")
        rows[layer] = np.array(values)
    if not rows:
        raise UserError(f"--baseline={path} has no rows under LAYER,P,R,F; make one with --make_baseline")
    return rows
