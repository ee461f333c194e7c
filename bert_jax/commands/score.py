"""`bert-jax score`: BERTScore of candidate sentences against references.

  bert-jax score --checkpoint=CKPT --candidates=cands.txt --references=refs.txt [--layer=N] [--idf]
      [--baseline=FILE] [--batch_size=64]
  bert-jax score --checkpoint=CKPT --make_baseline=OUT.csv --corpus=lines.txt [--seed=0]

Line i of --candidates is scored against line i of --references; give
--references several times (files of equal length) for several references per
candidate: the best-matching one counts, per P, R and F1 (as bert_score does).
Prints one JSON line per candidate, {"line", "precision", "recall", "f1"}, then
{"mean": {...}, "pairs", "layer", "idf", "rescaled"}. Equal to the
`bert-score` package (0.3.13) given the same model folder and --layer (its
num_layers); sentences longer than the model are truncated to their first
tokens, as it does (bert_jax/bertscore.py says exactly what is computed).

--make_baseline writes a baseline file (bert_score's LAYER,P,R,F csv, every
layer) from --corpus the way the authors made theirs: lines of under 32 words,
paired at random without repeats, the mean scores of those unrelated pairs.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import flags

from bert_jax import bertscore, embeddings
from bert_jax.commands import common
from bert_jax.errors import UserError

flags.DEFINE_string("checkpoint", None, "A bert-jax model dir or workdir, or a Hugging Face folder, with its tokenizer.")
flags.DEFINE_string("candidates", None, "Text file, one candidate sentence per line.")
flags.DEFINE_multi_string(
    "references", [], "Text file, one reference per line, as many lines as --candidates; repeat the flag for "
    "several references per candidate (the best one counts)."
)
flags.DEFINE_integer(
    "layer", None, "Encoder layer whose output is used, 1-based (0: the embeddings), as bert_score's num_layers "
    "(default: bert_score's recommended layer for the model's name, else the last layer)."
)
flags.DEFINE_bool("idf", False, "Weight tokens by idf computed on the references (special tokens weigh 0).")
flags.DEFINE_string("baseline", None, "Rescale with this baseline file (LAYER,P,R,F csv, bert_score's format).")
flags.DEFINE_string("make_baseline", None, "Write a baseline file here from --corpus instead of scoring.")
flags.DEFINE_string("corpus", None, "With --make_baseline: text, one sentence per line (the first million are used).")
flags.DEFINE_integer("seed", 0, "With --make_baseline: seed of the random pairing.")
flags.DEFINE_integer("batch_size", 64, "Sentences per jitted forward pass.", lower_bound=1)
FLAGS = flags.FLAGS


def _read_pairs() -> tuple[list[str], list[list[str]]]:
    """The candidates and each one's references; unequal line counts or an empty line are refused."""
    candidates = embeddings.read_lines(FLAGS.candidates, "candidates")
    columns = []
    for path in FLAGS.references:
        refs = embeddings.read_lines(path, "references")
        if len(refs) != len(candidates):
            raise UserError(
                f"--candidates={FLAGS.candidates} has {len(candidates)} lines but --references={path} has "
                f"{len(refs)}; line i of each is one pair, so they need the same number of lines"
            )
        columns.append(bertscore.check_sentences(refs, f"--references={path}"))
    candidates = bertscore.check_sentences(candidates, f"--candidates={FLAGS.candidates}")
    return candidates, [list(group) for group in zip(*columns, strict=True)]


def _scorer(cfg, params, tokenizer, meta, layer):
    max_length = embeddings.usable_length(cfg, meta.get("path"))
    return bertscore.BertScorer(cfg, params, tokenizer, layer, max_length, FLAGS.batch_size)


def _make_baseline(cfg, params, meta, tokenizer) -> None:
    if not FLAGS.corpus:
        raise UserError("--make_baseline needs --corpus=FILE: the text whose random pairs make the baseline")
    out = pathlib.Path(FLAGS.make_baseline)
    if not out.parent.is_dir():
        raise UserError(f"--make_baseline={out}: the folder {out.parent} does not exist; create it first")
    lines = embeddings.read_lines(FLAGS.corpus, "corpus")
    candidates, references = bertscore.baseline_pairs(lines, np.random.default_rng(FLAGS.seed))
    table = bertscore.make_baseline(_scorer(cfg, params, tokenizer, meta, None), candidates, references)
    bertscore.write_baseline(out, table, bertscore.model_fingerprint(cfg, params), FLAGS.checkpoint)
    print(json.dumps({"baseline": str(out), "pairs": len(candidates), "layers": cfg.num_layers}))


def main(argv):
    common.no_positional_args(argv, "pass files with --candidates and --references")
    common.require_flags("checkpoint")
    if not FLAGS.make_baseline and (not FLAGS.candidates or not FLAGS.references):
        raise UserError("pass --candidates=FILE and --references=FILE (or --make_baseline=OUT --corpus=FILE)")
    candidates, references = _read_pairs() if not FLAGS.make_baseline else ([], [])
    cfg, params, meta, tokenizer = embeddings.load(FLAGS.checkpoint)
    if FLAGS.make_baseline:
        return _make_baseline(cfg, params, meta, tokenizer)
    layer = FLAGS.layer if FLAGS.layer is not None else bertscore.default_layer(cfg, meta)[0]
    embeddings.check_layer(layer, cfg)
    baseline = None
    if FLAGS.baseline:
        fingerprint = bertscore.model_fingerprint(cfg, params)
        baseline = bertscore.read_baseline(FLAGS.baseline, layer, cfg.num_layers, fingerprint)
    scores = _scorer(cfg, params, tokenizer, meta, layer).score(candidates, references, idf=FLAGS.idf)
    if baseline is not None:
        scores = scores.rescaled(baseline)
    for i, (p, r, f) in enumerate(zip(scores.precision, scores.recall, scores.f1, strict=True), 1):
        sys.stdout.write(json.dumps({"line": i, "precision": float(p), "recall": float(r), "f1": float(f)}) + "\n")
    mean = {"precision": float(scores.precision.mean()), "recall": float(scores.recall.mean()),
            "f1": float(scores.f1.mean())}
    sys.stdout.write(json.dumps({"mean": mean, "pairs": len(candidates), "layer": layer, "idf": FLAGS.idf,
                                 "rescaled": baseline is not None}) + "\n")
