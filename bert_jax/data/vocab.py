"""Train vocabularies from a corpus spec: WordPiece (BERT vocab.txt), SentencePiece
(ALBERT spiece.model) or byte-level BPE (RoBERTa vocab.json + merges.txt).

* WordPiece: the Hugging Face `tokenizers` WordPiece trainer, behind BERT's
  own normalizer and pre-tokenizer -- the rules `bert_jax.tokenization`
  reproduces, so the learned pieces are the ones the tokenizer will look up.
  (tensorflow_text's `bert_vocab_from_dataset` was 17x slower: 53 s against 3 s
  for 4000 tokens of the built-in corpus, and it splits words its own way.)
  The file starts with [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4); when the
  corpus is too small for the requested size, `[unused0]`, `[unused1]`, ...
  fill it up to exactly `vocab_size` lines (the model's embedding size).
* SentencePiece: the `sentencepiece` trainer (unigram or BPE), with
  <pad>=0, <unk>=1 and control symbols [CLS] [SEP] [MASK] (ALBERT's
  spiece.model layout, so `load_tokenizer` reads it as an ALBERT tokenizer);
  uncased, it learns from the text as ALBERT's tokenizer will see it
  (NFKD, accents dropped, lowercased).
* Byte-level BPE: Hugging Face `tokenizers`' ByteLevelBPETokenizer (GPT-2's
  byte alphabet, no prefix space, cased), with RoBERTa's id layout: <s>=0
  <pad>=1 </s>=2 <unk>=3, the learned tokens, <mask> last.

All read at most `max_chars` characters of sentences from the corpus's start
(default 20 M, plenty for a 30k vocabulary) so a huge corpus costs no more.

The same corpus and settings give the same bytes in any process, folder or
thread count (docs/design.md, "Determinism"): WordPiece's base pieces are
handed to the trainer in a fixed order (`wordpiece_base_pieces`), SentencePiece
trains with a fixed thread count and its model never records the output path.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator

from bert_jax import atomic
from bert_jax.data import corpus
from bert_jax.errors import ConfigError, DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION_PREFIX = "##"
# The WordPiece alphabet: at most this many characters (the most frequent).
WORDPIECE_LIMIT_ALPHABET = 1000
DEFAULT_MAX_CHARS = 20_000_000
SP_MODEL_TYPES = ("unigram", "bpe")
# Fixed, not the machine's core count: the unigram trainer's sums (and so
# its pieces) depend on how many threads share the sentences, and the model
# file records the count. 16 is sentencepiece's own default.
SP_NUM_THREADS = 16
# RoBERTa's specials: these four at ids 0-3, <mask> the last id.
BYTE_BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
BYTE_BPE_MASK = "<mask>"


def sample_sentences(spec: str, max_chars: int = DEFAULT_MAX_CHARS, input_format: str = "auto") -> Iterator[str]:
    """Sentences of the corpus in order until `max_chars` characters have been given."""
    given = 0
    for doc in corpus.iter_documents(spec, format=input_format):
        for sentence in doc.sentences:
            yield sentence
            given += len(sentence)
            if given >= max_chars:
                return


def _some_sentences(spec: str, max_chars: int, input_format: str) -> Iterator[str]:
    """`sample_sentences`, refusing a corpus without any (DataError) before
    a trainer sees it."""
    sentences = sample_sentences(spec, max_chars, input_format)
    first = next(sentences, None)
    if first is None:
        raise DataError(f"input {spec!r} has no text to learn a vocabulary from")
    return itertools.chain([first], sentences)


# Each builder learns from the corpus SPEC's sentences up to `max_chars` characters (sample_sentences);
# a line holds its own arguments, the next how much of the corpus to read and in which format.
def build_wordpiece_vocab(
    spec: str, vocab_size: int, lower_case: bool, output_path: str,
    max_chars: int = DEFAULT_MAX_CHARS, input_format: str = "auto",
) -> str:  # fmt: skip
    """Learn a WordPiece vocab of exactly `vocab_size` tokens; writes BERT's vocab.txt format, returns its path."""
    from tokenizers import BertWordPieceTokenizer

    if vocab_size < len(SPECIAL_TOKENS) + 100:
        raise ConfigError(f"vocab_size {vocab_size} is too small; use at least {len(SPECIAL_TOKENS) + 100}")
    # BERT's normalizer and pre-tokenizer: the same words bert_jax.tokenization will see.
    trainer = BertWordPieceTokenizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lower_case
    )
    # Read once: the base pieces are counted in one pass, learnt from in the next.
    sentences = list(_some_sentences(spec, max_chars, input_format))
    alphabet, continuations = wordpiece_base_pieces(trainer, sentences, WORDPIECE_LIMIT_ALPHABET)
    # Every base piece is handed in, in a fixed order, so the trainer assigns
    # none itself: it would number "##x" pieces in the order of its hash map of
    # words (another order every process), and break ties between merges of
    # equal count by those numbers -- another vocab every run.
    trainer.train_from_iterator(
        sentences,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[*SPECIAL_TOKENS, *alphabet, *continuations],
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    by_id = sorted(trainer.get_vocab().items(), key=lambda item: item[1])
    tokens = [token for token, _ in by_id][:vocab_size]
    tokens += [f"[unused{i}]" for i in range(vocab_size - len(tokens))]
    _write_lines(output_path, tokens)
    return output_path


def wordpiece_base_pieces(trainer, sentences: list[str], limit_alphabet: int) -> tuple[list[str], list[str]]:
    """(alphabet, continuation pieces) the WordPiece trainer would start from, in a fixed order.

    The alphabet: the `limit_alphabet` most frequent characters of the words
    (ties: the lower code point), sorted by code point; the continuations:
    "##c" for each of those characters seen after a word's first character,
    sorted. Words as `trainer` (a BertWordPieceTokenizer) normalizes and splits them.
    """
    normalizer, pre_tokenizer = trainer.normalizer, trainer.pre_tokenizer
    words: collections.Counter = collections.Counter()
    for sentence in sentences:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)))
    chars: collections.Counter = collections.Counter()
    later: set[str] = set()
    for word, count in words.items():
        for char in word:
            chars[char] += count
        later.update(word[1:])
    ranked = sorted(chars.items(), key=lambda item: (-item[1], item[0]))
    alphabet = sorted(char for char, _ in ranked[:limit_alphabet])
    continuations = [CONTINUATION_PREFIX + char for char in alphabet if char in later]
    return alphabet, continuations


def build_sentencepiece_model(
    spec: str, vocab_size: int, model_type: str, output_prefix: str,
    max_chars: int = DEFAULT_MAX_CHARS, input_format: str = "auto", lower_case: bool = False,
) -> str:  # fmt: skip
    """Train a SentencePiece model; writes OUTPUT_PREFIX.model and .vocab, returns the .model path."""
    import sentencepiece as spm

    if model_type not in SP_MODEL_TYPES:
        raise ConfigError(f"sp_model_type {model_type!r} is not one of {', '.join(SP_MODEL_TYPES)}")
    sentences = sample_sentences(spec, max_chars, input_format)
    if lower_case:
        from bert_jax.tokenization import albert_preprocess  # imports TensorFlow: only here

        sentences = (albert_preprocess(s, lower_case=True) for s in sentences)
    directory = os.path.dirname(os.path.abspath(output_prefix))
    os.makedirs(directory, exist_ok=True)
    model = io.BytesIO()
    try:
        # To a stream, not to OUTPUT_PREFIX: a model written by the trainer
        # holds that path, so the same model saved elsewhere had other bytes.
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            pad_piece="<pad>",
            unk_piece="<unk>",
            control_symbols=["[CLS]", "[SEP]", "[MASK]"],
            character_coverage=0.9995,
            num_threads=SP_NUM_THREADS,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise DataError(f"sentencepiece on {spec!r}: {str(e).splitlines()[0]}") from None
    _write_bytes(output_prefix + ".model", model.getvalue())
    _write_lines(output_prefix + ".vocab", sentencepiece_vocab_lines(model.getvalue()))
    return output_prefix + ".model"


def sentencepiece_vocab_lines(model: bytes) -> list[str]:
    """The trainer's OUTPUT_PREFIX.vocab lines of a serialized model: "piece<TAB>score", score as C++ prints it."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=model)
    return [f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}" for i in range(processor.get_piece_size())]


def build_byte_bpe_vocab(
    spec: str, vocab_size: int, output_dir: str,
    max_chars: int = DEFAULT_MAX_CHARS, input_format: str = "auto",
) -> str:  # fmt: skip
    """Learn a byte-level BPE of at most `vocab_size` tokens (fewer when the
    corpus has fewer merges to learn); writes OUTPUT_DIR/vocab.json and
    merges.txt (RoBERTa's layout, see the module docstring), returns OUTPUT_DIR."""
    from tokenizers import ByteLevelBPETokenizer

    if vocab_size < 256 + len(BYTE_BPE_SPECIALS) + 1:
        raise ConfigError(
            f"vocab_size {vocab_size} is too small for byte-level BPE; use at least "
            f"{256 + len(BYTE_BPE_SPECIALS) + 1} (256 bytes + 5 special tokens)"
        )
    sentences = _some_sentences(spec, max_chars, input_format)
    trainer = ByteLevelBPETokenizer(add_prefix_space=False)
    trainer.train_from_iterator(
        sentences,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[*BYTE_BPE_SPECIALS, BYTE_BPE_MASK],
        show_progress=False,
    )
    # The trainer puts every special first; RoBERTa has <mask> last.
    by_id = [t for t, _ in sorted(trainer.get_vocab().items(), key=lambda item: item[1])]
    ordered = [t for t in by_id if t != BYTE_BPE_MASK] + [BYTE_BPE_MASK]
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir) as temp:
        trainer.save_model(temp)  # merges.txt in the trainer's own format
        vocab_json = json.dumps({t: i for i, t in enumerate(ordered)}, ensure_ascii=False)
        # merges first: a folder with vocab.json but no merges.txt is refused by load_tokenizer
        atomic.write_bytes(os.path.join(output_dir, "merges.txt"), pathlib.Path(temp, "merges.txt").read_bytes())
        atomic.write_text(os.path.join(output_dir, "vocab.json"), vocab_json)
    return output_dir


def _write_bytes(path: str, data: bytes) -> None:
    atomic.write_bytes(path, data)


def _write_lines(path: str, tokens: list[str]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic.write_text(path, "".join(t + "\n" for t in tokens))
