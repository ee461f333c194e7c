"""`bert-jax build-vocab --input=SPEC --output=PATH --vocab_size=N [--model=wordpiece|sentencepiece|bytebpe]`.

WordPiece writes BERT's vocab.txt at PATH; SentencePiece writes PATH.model and
PATH.vocab (PATH is the prefix); byte-level BPE writes PATH/vocab.json and
PATH/merges.txt (PATH is a folder). See bert_jax/data/vocab.py.
"""

from __future__ import annotations

from absl import flags

from bert_jax.commands import common
from bert_jax.data import corpus, vocab
from bert_jax.errors import UserError

_INPUT = flags.DEFINE_string(
    "input", None, "Corpus: globs, tfds:NAME:FEATURE[@DIR] or builtin:stdlib-docs.", required=True
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "vocab.txt path (wordpiece), model prefix (sentencepiece) or folder (bytebpe).", required=True
)
_SIZE = flags.DEFINE_integer("vocab_size", None, "Tokens in the vocabulary.", required=True, lower_bound=1)
_MODEL = flags.DEFINE_enum(
    "model", "wordpiece", ["wordpiece", "sentencepiece", "bytebpe"],
    "Vocabulary kind: BERT WordPiece, SentencePiece (ALBERT/XLM-R) or byte-level BPE (RoBERTa).",
)
_SP_TYPE = flags.DEFINE_enum("sp_model_type", "unigram", list(vocab.SP_MODEL_TYPES), "SentencePiece algorithm.")
_LOWER = flags.DEFINE_boolean(
    "lower_case", None,
    "Learn an uncased vocabulary (lowercase, accents stripped). Default: true for wordpiece and sentencepiece; "
    "byte-level BPE is always cased.",
)
_MAX_CHARS = flags.DEFINE_integer(
    "max_chars", vocab.DEFAULT_MAX_CHARS, "Learn from at most this many characters of the corpus's start."
)
_FORMAT = flags.DEFINE_enum("input_format", "auto", corpus.FORMATS, "Local text layout.")


def main(argv: list[str]) -> None:
    common.no_positional_args(argv, hint="")
    lower_case = True if _LOWER.value is None else _LOWER.value
    if _MODEL.value == "wordpiece":
        path = vocab.build_wordpiece_vocab(
            _INPUT.value, _SIZE.value, lower_case, _OUTPUT.value, _MAX_CHARS.value, _FORMAT.value
        )
    elif _MODEL.value == "sentencepiece":
        path = vocab.build_sentencepiece_model(
            _INPUT.value, _SIZE.value, _SP_TYPE.value, _OUTPUT.value, _MAX_CHARS.value, _FORMAT.value, lower_case
        )
    else:
        if _LOWER.value:
            raise UserError("--model=bytebpe is cased (RoBERTa's byte-level BPE); drop --lower_case")
        path = vocab.build_byte_bpe_vocab(_INPUT.value, _SIZE.value, _OUTPUT.value, _MAX_CHARS.value, _FORMAT.value)
    print(path)
