"""`bert-jax create-data --input_file=SPEC --output_file=OUT --vocab_file=VOCAB [...]`.

Raw text -> sharded TFRecord pre-training instances + metadata.json (see
bert_jax/data/create_data.py and docs/data.md). An output directory holding
another run's dataset is refused unless --overwrite; SIGTERM / Ctrl-C stop it
with one line (exit 143 / 130) and no shard left behind. Flags keep the names of
google-research/bert's create_pretraining_data.py.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from bert_jax.commands import common
from bert_jax.data import corpus, create_data, inspect
from bert_jax.errors import UserError

_INPUT = flags.DEFINE_string(
    "input_file", None, "Corpus: comma-separated globs (.gz ok), tfds:NAME:FEATURE[@DIR] or builtin:stdlib-docs.",
    required=True,
)
_OUTPUT = flags.DEFINE_string(
    "output_file", None, "Output directory, PATH@N (N shards) or comma-separated shard files.", required=True
)
_VOCAB = flags.DEFINE_string("vocab_file", None, "BERT vocab.txt.", required=True)
_LOWER = flags.DEFINE_boolean("do_lower_case", True, "Lowercase and strip accents (uncased vocab).")
_DEFAULTS = create_data.CreateDataOptions()
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", _DEFAULTS.max_seq_length, "Tokens per instance, with [CLS]/[SEP].")
_MAX_PRED = flags.DEFINE_integer(
    "max_predictions_per_seq", _DEFAULTS.max_predictions_per_seq, "Masked positions per instance at most."
)
_MLM_PROB = flags.DEFINE_float("masked_lm_prob", _DEFAULTS.masked_lm_prob, "Fraction of tokens masked.")
_SEED = flags.DEFINE_integer("random_seed", _DEFAULTS.random_seed, "Seed: the output is a function of it.")
_DUPE = flags.DEFINE_integer("dupe_factor", _DEFAULTS.dupe_factor, "Passes over the corpus, each masked anew.")
_SHORT = flags.DEFINE_float("short_seq_prob", _DEFAULTS.short_seq_prob, "Probability of a shorter target length.")
_WWM = flags.DEFINE_boolean("do_whole_word_mask", _DEFAULTS.do_whole_word_mask, "Mask whole words.")
_NGRAM = flags.DEFINE_integer(
    "ngram_max", _DEFAULTS.ngram_max, "ALBERT n-gram masking: spans of 1..N words, P(n) ~ 1/n (1: BERT)."
)
_MODE = flags.DEFINE_enum(
    "mode", _DEFAULTS.mode, create_data.MODES, "nsp (BERT), sop (ALBERT), mlm_packed (RoBERTa), packed (see --packed)."
)
_PACKED = flags.DEFINE_boolean(
    "packed", False, "Unpadded training (--mode=packed): whole documents end to end in full rows, with document_ids "
    "(MLM only: train with model.pair_head=none).",
)
_MASKING = flags.DEFINE_enum(
    "masking", _DEFAULTS.masking, create_data.MASKINGS, "static: masks in the records; none: mask later in tf.data."
)
_WORKERS = flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Worker processes.", lower_bound=1)
_SHARDS = flags.DEFINE_integer("num_shards", _DEFAULTS.num_shards, "Output shards (for a directory output).")
_BLOCK = flags.DEFINE_integer("block_size", _DEFAULTS.block_size, "Documents per block (NSP neighbourhood).")
_BLOCK_CHARS = flags.DEFINE_integer("block_chars", _DEFAULTS.block_chars, "Characters that close a block early.")
_FORMAT = flags.DEFINE_enum("input_format", "auto", corpus.FORMATS, "Local text layout.")
_TFDS_DIR = flags.DEFINE_string("tfds_data_dir", None, "data_dir for tfds: inputs (or NAME:FEATURE@DIR).")
_RUNNER = flags.DEFINE_enum(
    "runner", "local", ["local", "beam"], "local: worker processes on this machine; beam: an Apache Beam pipeline."
)
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_pipeline_options",
    "--runner=DirectRunner",
    "With --runner=beam: Beam's own flags, one shell-quoted string "
    '(e.g. "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp --setup_file=./setup.py").',
)
_OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Replace a dataset already in the output directory (else refused: one run's shards per directory)."
)
_JSON = flags.DEFINE_boolean("json", False, "Print the summary as JSON instead of text.")
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.")


def _mode() -> str:
    """--mode, or "packed" with --packed (refused beside another explicit --mode)."""
    if not _PACKED.value:
        return _MODE.value
    if flags.FLAGS["mode"].present and _MODE.value != "packed":
        raise UserError(
            f"--packed with --mode={_MODE.value}: packed rows are MLM-only (no sentence pairs); drop --mode, "
            "or drop --packed"
        )
    return "packed"


def main(argv: list[str]) -> None:
    common.no_positional_args(argv, hint="")
    options = create_data.CreateDataOptions(
        vocab_file=_VOCAB.value,
        do_lower_case=_LOWER.value,
        max_seq_length=_MAX_SEQ.value,
        max_predictions_per_seq=_MAX_PRED.value,
        masked_lm_prob=_MLM_PROB.value,
        random_seed=_SEED.value,
        dupe_factor=_DUPE.value,
        short_seq_prob=_SHORT.value,
        do_whole_word_mask=_WWM.value,
        ngram_max=_NGRAM.value,
        mode=_mode(),
        masking=_MASKING.value,
        num_workers=_WORKERS.value,
        num_shards=_SHARDS.value,
        block_size=_BLOCK.value,
        block_chars=_BLOCK_CHARS.value,
        input_format=_FORMAT.value,
        tfds_data_dir=_TFDS_DIR.value,
        progress=_PROGRESS.value,
        overwrite=_OVERWRITE.value,
    )
    if _RUNNER.value == "beam":
        from bert_jax.data import beam_create  # a one-line UserError when apache_beam is not installed

        summary = beam_create.create_pretraining_data_beam(
            options, _INPUT.value, _OUTPUT.value, _BEAM_OPTIONS.value
        )
    else:
        try:
            summary = create_data.create_pretraining_data(options, _INPUT.value, _OUTPUT.value)
        except create_data.Stopped as e:
            # One line, and the shell's status for that signal (143 for SIGTERM, 130 for SIGINT).
            print(f"bert-jax create-data: {e}", file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)
    report = inspect.created_data_report(summary)
    print(json.dumps(report, indent=1) if _JSON.value else inspect.format_report(report))
