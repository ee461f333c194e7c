"""The family's tokenizers behind one interface: WordPiece (BERT), SentencePiece
(XLM-R, CamemBERT, ALBERT), byte-level BPE (RoBERTa) and a Hugging Face
tokenizer.json (ModernBERT); `load_tokenizer` picks the kind from the files.
The other kinds are at the end of this module and in docs/family.md;
WordPiece first:

WordPiece tokenization with the reference BERT tokenizer's exact rules, in-graph.

`WordPieceTokenizer` gives Hugging Face `BertTokenizerFast`'s ids (the `tokenizers`
BertNormalizer + BertPreTokenizer + WordPiece, which implement google-research
BERT's `tokenization.py` rules) two ways: `encode` (Python) runs that
`tokenizers` pipeline itself, and `tf_encode` reproduces it with TensorFlow
string ops and tensorflow-text's `FastWordpieceTokenizer` for use inside
`tf.data` (TensorFlow is imported only then). The steps (docs/tokenizer.md has
the details):

1. bytes that are not UTF-8 become U+FFFD, which the next step drops;
2. drop NUL, U+FFFD and "control" characters; whitespace becomes " ";
3. uncased only: NFD, drop nonspacing marks (Mn), lowercase;
4. split on spaces; punctuation and CJK ideographs become words of their own;
5. WordPiece each word (longest match first, "##" continuations); a word of
   more than 100 characters, or one that cannot be covered, is [UNK].

The character classes below are the reference's own, not the current Unicode
database's: `tokenizers` takes General_Category from an old Unicode version
(e.g. it keeps unassigned code points, knows no punctuation added since
Unicode 10) and skips CJK U+2B820..U+2B91F. They were read off
`tokenizers` 0.22 code point by code point; tests/test_tokenization.py checks
them against the installed `tokenizers` over every code point.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import pathlib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from bert_jax.errors import DataError


class _ImportedOnUse:
    """A module imported at its first attribute access, not at this module's import.

    TensorFlow costs ~5 CPU-s to import; a process that only needs this
    module's constants or pure-Python parts (create-data's main process,
    `load_vocab`, the byte-level BPE kind) must not pay it. Unlike
    `importlib.util.LazyLoader` nothing enters `sys.modules` before the import.
    """

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attr: str):
        if attr in ("_name", "_module"):  # not yet set (a copy being built): no recursion
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


tf = _ImportedOnUse("tensorflow")
tf_text = _ImportedOnUse("tensorflow_text")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# BERT's max_input_chars_per_word: a longer word (in characters, after
# normalization) is one [UNK].
MAX_CHARS_PER_WORD = 100
_MAX_UTF8_BYTES_PER_CHAR = 4
# Lines per tf.function call in `encode`: large enough to amortize the call,
# small enough to keep memory flat on millions of lines.
_ENCODE_CHUNK = 8192

# Code point tables, hexadecimal, "a-b" an inclusive range.
# Removed by the cleaning step: Cc, Cf, Co of the reference's Unicode version
# (not \t \n \r), NUL and U+FFFD.
_DROP = (
    "0-8 b-c e-1f 7f-9f ad 600-605 61c 6dd 70f 180e 200b-200f 202a-202e 2060-2064 2066-206f e000-f8ff "
    "feff fff9-fffb fffd 110bd 1bca0-1bca3 1d173-1d17a e0001 e0020-e007f f0000-ffffd 100000-10fffd "
)
# Mapped to " ": \t \n \r and Rust's char::is_whitespace (White_Space, hence U+2028/9).
_WHITESPACE = "9-a d 20 a0 1680 2000-200a 2028-2029 202f 205f 3000 "
# BERT's CJK ideograph blocks as the reference has them (U+2B820..U+2B91F missing).
_CJK = "3400-4dbf 4e00-9fff f900-faff 20000-2a6df 2a700-2b81f 2b920-2ceaf 2f800-2fa1f "
# ASCII 33-47, 58-64, 91-96, 123-126 and General_Category P* (reference's version).
_PUNCTUATION = (
    "21-2f 3a-40 5b-60 7b-7e a1 a7 ab b6-b7 bb bf 37e 387 55a-55f 589-58a 5be 5c0 5c3 5c6 5f3-5f4 "
    "609-60a 60c-60d 61b 61e-61f 66a-66d 6d4 700-70d 7f7-7f9 830-83e 85e 964-965 970 af0 df4 e4f "
    "e5a-e5b f04-f12 f14 f3a-f3d f85 fd0-fd4 fd9-fda 104a-104f 10fb 1360-1368 1400 166d-166e "
    "169b-169c 16eb-16ed 1735-1736 17d4-17d6 17d8-17da 1800-180a 1944-1945 1a1e-1a1f 1aa0-1aa6 "
    "1aa8-1aad 1b5a-1b60 1bfc-1bff 1c3b-1c3f 1c7e-1c7f 1cc0-1cc7 1cd3 2010-2027 2030-2043 2045-2051 "
    "2053-205e 207d-207e 208d-208e 2308-230b 2329-232a 2768-2775 27c5-27c6 27e6-27ef 2983-2998 "
    "29d8-29db 29fc-29fd 2cf9-2cfc 2cfe-2cff 2d70 2e00-2e2e 2e30-2e42 3001-3003 3008-3011 3014-301f "
    "3030 303d 30a0 30fb a4fe-a4ff a60d-a60f a673 a67e a6f2-a6f7 a874-a877 a8ce-a8cf a8f8-a8fa a8fc "
    "a92e-a92f a95f a9c1-a9cd a9de-a9df aa5c-aa5f aade-aadf aaf0-aaf1 abeb fd3e-fd3f fe10-fe19 "
    "fe30-fe52 fe54-fe61 fe63 fe68 fe6a-fe6b ff01-ff03 ff05-ff0a ff0c-ff0f ff1a-ff1b ff1f-ff20 "
    "ff3b-ff3d ff3f ff5b ff5d ff5f-ff65 10100-10102 1039f 103d0 1056f 10857 1091f 1093f 10a50-10a58 "
    "10a7f 10af0-10af6 10b39-10b3f 10b99-10b9c 11047-1104d 110bb-110bc 110be-110c1 11140-11143 "
    "11174-11175 111c5-111c9 111cd 111db 111dd-111df 11238-1123d 112a9 114c6 115c1-115d7 11641-11643 "
    "1173c-1173e 12470-12474 16a6e-16a6f 16af5 16b37-16b3b 16b44 1bc9f 1da87-1da8b "
)
# General_Category Mn (reference's version): dropped after NFD when uncased.
_NONSPACING_MARKS = (
    "300-36f 483-487 591-5bd 5bf 5c1-5c2 5c4-5c5 5c7 610-61a 64b-65f 670 6d6-6dc 6df-6e4 6e7-6e8 "
    "6ea-6ed 711 730-74a 7a6-7b0 7eb-7f3 816-819 81b-823 825-827 829-82d 859-85b 8e3-902 93a 93c "
    "941-948 94d 951-957 962-963 981 9bc 9c1-9c4 9cd 9e2-9e3 a01-a02 a3c a41-a42 a47-a48 a4b-a4d a51 "
    "a70-a71 a75 a81-a82 abc ac1-ac5 ac7-ac8 acd ae2-ae3 b01 b3c b3f b41-b44 b4d b56 b62-b63 b82 bc0 "
    "bcd c00 c3e-c40 c46-c48 c4a-c4d c55-c56 c62-c63 c81 cbc cbf cc6 ccc-ccd ce2-ce3 d01 d41-d44 d4d "
    "d62-d63 dca dd2-dd4 dd6 e31 e34-e3a e47-e4e eb1 eb4-eb9 ebb-ebc ec8-ecd f18-f19 f35 f37 f39 "
    "f71-f7e f80-f84 f86-f87 f8d-f97 f99-fbc fc6 102d-1030 1032-1037 1039-103a 103d-103e 1058-1059 "
    "105e-1060 1071-1074 1082 1085-1086 108d 109d 135d-135f 1712-1714 1732-1734 1752-1753 1772-1773 "
    "17b4-17b5 17b7-17bd 17c6 17c9-17d3 17dd 180b-180d 18a9 1920-1922 1927-1928 1932 1939-193b "
    "1a17-1a18 1a1b 1a56 1a58-1a5e 1a60 1a62 1a65-1a6c 1a73-1a7c 1a7f 1ab0-1abd 1b00-1b03 1b34 "
    "1b36-1b3a 1b3c 1b42 1b6b-1b73 1b80-1b81 1ba2-1ba5 1ba8-1ba9 1bab-1bad 1be6 1be8-1be9 1bed "
    "1bef-1bf1 1c2c-1c33 1c36-1c37 1cd0-1cd2 1cd4-1ce0 1ce2-1ce8 1ced 1cf4 1cf8-1cf9 1dc0-1df5 "
    "1dfc-1dff 20d0-20dc 20e1 20e5-20f0 2cef-2cf1 2d7f 2de0-2dff 302a-302d 3099-309a a66f a674-a67d "
    "a69e-a69f a6f0-a6f1 a802 a806 a80b a825-a826 a8c4 a8e0-a8f1 a926-a92d a947-a951 a980-a982 a9b3 "
    "a9b6-a9b9 a9bc a9e5 aa29-aa2e aa31-aa32 aa35-aa36 aa43 aa4c aa7c aab0 aab2-aab4 aab7-aab8 "
    "aabe-aabf aac1 aaec-aaed aaf6 abe5 abe8 abed fb1e fe00-fe0f fe20-fe2f 101fd 102e0 10376-1037a "
    "10a01-10a03 10a05-10a06 10a0c-10a0f 10a38-10a3a 10a3f 10ae5-10ae6 11001 11038-11046 1107f-11081 "
    "110b3-110b6 110b9-110ba 11100-11102 11127-1112b 1112d-11134 11173 11180-11181 111b6-111be "
    "111ca-111cc 1122f-11231 11234 11236-11237 112df 112e3-112ea 11300-11301 1133c 11340 11366-1136c "
    "11370-11374 114b3-114b8 114ba 114bf-114c0 114c2-114c3 115b2-115b5 115bc-115bd 115bf-115c0 "
    "115dc-115dd 11633-1163a 1163d 1163f-11640 116ab 116ad 116b0-116b5 116b7 1171d-1171f 11722-11725 "
    "11727-1172b 16af0-16af4 16b30-16b36 16f8f-16f92 1bc9d-1bc9e 1d167-1d169 1d17b-1d182 1d185-1d18b "
    "1d1aa-1d1ad 1d242-1d244 1da00-1da36 1da3b-1da6c 1da75 1da84 1da9b-1da9f 1daa1-1daaf 1e8d0-1e8d6 "
    "e0100-e01ef "
)
# Uncased only: characters (all added in Unicode 14-16) whose NFD/Mn/lowercase
# result in TensorFlow's ICU differs from the reference's; "cp:out,out" is the
# reference's result for that character alone.
_LOWERCASE_FIXES = (
    "1c89:1c8a 2c2f:2c5f a7c0:a7c1 a7cb:264 a7cc:a7cd a7ce:a7cf a7d0:a7d1 a7d2:a7d3 a7d4:a7d5 "
    "a7d6:a7d7 a7d8:a7d9 a7da:a7db a7dc:19b 10570:10597 10571:10598 10572:10599 10573:1059a "
    "10574:1059b 10575:1059c 10576:1059d 10577:1059e 10578:1059f 10579:105a0 1057a:105a1 1057c:105a3 "
    "1057d:105a4 1057e:105a5 1057f:105a6 10580:105a7 10581:105a8 10582:105a9 10583:105aa 10584:105ab "
    "10585:105ac 10586:105ad 10587:105ae 10588:105af 10589:105b0 1058a:105b1 1058c:105b3 1058d:105b4 "
    "1058e:105b5 1058f:105b6 10590:105b7 10591:105b8 10592:105b9 10594:105bb 10595:105bc 105c9:105c9 "
    "105e4:105e4 10d50:10d70 10d51:10d71 10d52:10d72 10d53:10d73 10d54:10d74 10d55:10d75 10d56:10d76 "
    "10d57:10d77 10d58:10d78 10d59:10d79 10d5a:10d7a 10d5b:10d7b 10d5c:10d7c 10d5d:10d7d 10d5e:10d7e "
    "10d5f:10d7f 10d60:10d80 10d61:10d81 10d62:10d82 10d63:10d83 10d64:10d84 10d65:10d85 11383:11383 "
    "11385:11385 1138e:1138e 11391:11391 113c5:113c5 113c7:113c7 113c8:113c8 11938:11938 16121:16121 "
    "16122:16122 16123:16123 16124:16124 16125:16125 16126:16126 16127:16127 16128:16128 16d68:16d68 "
    "16d69:16d69 16d6a:16d6a 16ea0:16ebb 16ea1:16ebc 16ea2:16ebd 16ea3:16ebe 16ea4:16ebf 16ea5:16ec0 "
    "16ea6:16ec1 16ea7:16ec2 16ea8:16ec3 16ea9:16ec4 16eaa:16ec5 16eab:16ec6 16eac:16ec7 16ead:16ec8 "
    "16eae:16ec9 16eaf:16eca 16eb0:16ecb 16eb1:16ecc 16eb2:16ecd 16eb3:16ece 16eb4:16ecf 16eb5:16ed0 "
    "16eb6:16ed1 16eb7:16ed2 16eb8:16ed3 "
)


def _code_point_ranges(table: str) -> list[tuple[int, int]]:
    """Parse a table: "9-a d 20" -> [(9, 10), (13, 13), (32, 32)]."""
    ranges = []
    for item in table.split():
        first, _, last = item.partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return ranges


def _regex_class(table: str) -> str:
    """An RE2 character class matching exactly the code points of `table`."""
    parts = [
        f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in _code_point_ranges(table)
    ]
    return "[" + "".join(parts) + "]"


def _lowercase_fixes() -> dict[str, str]:
    """_LOWERCASE_FIXES as {character: the reference's uncased result}."""
    fixes = {}
    for item in _LOWERCASE_FIXES.split():
        key, _, value = item.partition(":")
        fixes[chr(int(key, 16))] = "".join(chr(int(v, 16)) for v in value.split(","))
    return fixes


_DROP_RE = _regex_class(_DROP)
_WHITESPACE_RE = _regex_class(_WHITESPACE)
_NONSPACING_MARK_RE = _regex_class(_NONSPACING_MARKS)
_OWN_WORD_RE = _regex_class(_PUNCTUATION) + "|" + _regex_class(_CJK)
_FIXES = _lowercase_fixes()
_FIX_ROW_RE = "(?s).*[" + "".join(f"\\x{{{ord(c):x}}}" for c in _FIXES) + "].*"


def load_vocab(path: str) -> list[str]:
    """Tokens of a BERT vocab.txt (UTF-8, one per line), index = id.

    Raises DataError, naming the file, if it cannot be read, is not UTF-8, has
    an empty or repeated token, or lacks any of SPECIAL_TOKENS.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(
            f"vocab {path}: cannot read it ({e.strerror}); pass the path of a BERT vocab.txt"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"vocab {path}: line {line} is not UTF-8; re-save the file as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [line.rstrip("\r") for line in lines]
    seen: dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        if not token:
            raise DataError(f"vocab {path}: line {number} is empty; remove it (one token per line)")
        if token in seen:
            raise DataError(
                f"vocab {path}: token {token!r} on lines {seen[token]} and {number}; keep one of them"
            )
        seen[token] = number
    missing = [t for t in SPECIAL_TOKENS if t not in seen]
    if missing:
        raise DataError(
            f"vocab {path}: lacks the special token(s) {' '.join(missing)}; add them, one per line"
        )
    return tokens


def _matchable_tokens(vocab: list[str]) -> list[str]:
    """The vocab for FastWordpieceTokenizer, whose trie cannot hold a NUL.

    Text never contains NUL (cleaning drops it), so such a token can never
    match; a placeholder with "[" (always split off) keeps the ids in place.
    """
    return [f"[nul-token-{i}]" if "\x00" in t else t for i, t in enumerate(vocab)]


def _as_utf8_bytes(text: str | bytes) -> bytes:
    # A lone surrogate (str from surrogateescape) becomes invalid UTF-8, hence
    # U+FFFD in-graph and then dropped, like any other undecodable byte.
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


class _TokenizerBase:
    """The interface every tokenizer kind shares (WordPiece, SentencePiece,
    byte-level BPE): the Python methods here, on top of a subclass's
    `_encode_chunk` (lines -> ids, row_splits) and `vocab` list (index = id);
    each kind adds `tf_encode`, the special ids, `vocab_size`, `vocab_sha256`
    and `is_continuation_id`."""

    kind: str
    vocab: list[str]
    unk_id: int
    _ids: dict[str, int]

    def _encode_chunk(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [pieces], row_splits int64 [n + 1]) of at most _ENCODE_CHUNK lines."""
        raise NotImplementedError

    def encode_flat(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """All lines' ids at once: (ids int64 [total pieces], row_splits int64 [n + 1])."""
        all_ids, all_splits, offset = [], [np.zeros(1, np.int64)], 0
        for start in range(0, len(texts), _ENCODE_CHUNK):
            ids, splits = self._encode_chunk(texts[start : start + _ENCODE_CHUNK])
            all_ids.append(ids)
            all_splits.append(splits[1:] + offset)
            offset += int(splits[-1])
        ids = np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64)
        return ids, np.concatenate(all_splits)

    def encode(self, texts: Sequence[str | bytes]) -> list[list[int]]:
        """Ids per line, no [CLS]/[SEP] (<s>/</s>); bytes that are not UTF-8
        are dropped (WordPiece) or read as U+FFFD (the other kinds)."""
        ids, splits = self.encode_flat(texts)
        return [row.tolist() for row in np.split(ids, splits[1:-1])] if len(texts) else []

    def tokenize(self, texts: Sequence[str | bytes]) -> list[list[str]]:
        """Tokens (vocab strings) per line, no [CLS]/[SEP]."""
        return [self.convert_ids_to_tokens(row) for row in self.encode(texts)]

    @functools.cached_property
    def space_starts_word(self) -> bool:
        """Whether a word's first piece carries the space before it (byte-level
        BPE's "Ġword"), so a word inside running text tokenizes differently
        from the word alone. Found by encoding a few words with and without a
        space before them, which holds for every kind and pipeline (WordPiece
        and SentencePiece drop or add the space either way)."""
        probes = ["a", "the", "x"]
        return self.encode(probes) != self.encode([" " + p for p in probes])

    def tokenize_words(
        self, words: Sequence[str], after_space: Sequence[bool] | None = None
    ) -> list[list[str]]:
        """Pieces of each word (text without whitespace) as running text has
        them, so that word-aligned tasks (SQuAD, NER) feed the model the
        pieces it was trained on: `after_space[i]` says word i follows a
        space in its text (default: every word but the first). Only for a
        tokenizer whose pieces carry the space (`space_starts_word`) does it
        matter; for the others this is `tokenize(words)`."""
        if not self.space_starts_word:
            return self.tokenize(words)
        if after_space is None:
            after_space = [i > 0 for i in range(len(words))]
        return self.tokenize([" " + w if space else w for w, space in zip(words, after_space, strict=True)])

    def iter_encode(
        self, lines: Iterable[str | bytes], batch_size: int = 1024
    ) -> Iterator[tuple[list[str], list[int]]]:
        """(tokens, ids) per line, in order, encoding `batch_size` lines per call."""
        batch: list[str | bytes] = []
        for line in lines:
            batch.append(line)
            if len(batch) == batch_size:
                yield from self._tokens_and_ids(batch)
                batch = []
        yield from self._tokens_and_ids(batch)

    def _tokens_and_ids(self, batch: Sequence[str | bytes]) -> Iterator[tuple[list[str], list[int]]]:
        for ids in self.encode(batch):
            yield self.convert_ids_to_tokens(ids), ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab[int(i)] for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Vocab ids; a token not in the vocab gives unk_id."""
        return [self._ids.get(t, self.unk_id) for t in tokens]


class WordPieceTokenizer(_TokenizerBase):
    """BERT WordPiece with `BertTokenizerFast`'s ids: `encode` through `tokenizers`,
    `tf_encode` in TF graph ops (equal ids; `graph_encode_flat` runs the graph).

    Ids never include [CLS]/[SEP]; text that spells a special token ("[MASK]")
    is ordinary text (split as punctuation), as in google-research BERT.
    """

    kind = "wordpiece"

    def __init__(self, vocab_file: str, lower_case: bool = True):
        self.vocab_file = vocab_file
        self.lower_case = lower_case
        self.vocab = load_vocab(vocab_file)
        self.vocab_size = len(self.vocab)
        with open(vocab_file, "rb") as f:
            self.vocab_sha256 = hashlib.sha256(f.read()).hexdigest()
        self._ids = {token: i for i, token in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self._ids[t] for t in SPECIAL_TOKENS
        )
        self.unk_token = "[UNK]"
        self.is_continuation_id = np.array([t.startswith("##") for t in self.vocab], dtype=bool)
        self._rust = _reference_wordpiece(self._ids, self.unk_token, lower_case)

    @functools.cached_property
    def _graph_parts(self):
        """(FastWordpieceTokenizer, fixes table, tf.function of `_tf_encode_flat`),
        built on first use of a tf_* method: TensorFlow's import and the tables
        cost seconds that `encode` never needs. `init_scope`: created eagerly even
        when first needed while tracing (inside `tf.data.Dataset.map`)."""
        with tf.init_scope():
            wordpiece = tf_text.FastWordpieceTokenizer(
                vocab=_matchable_tokens(self.vocab),
                suffix_indicator="##",
                # The 100-character limit is applied before, in characters.
                max_bytes_per_word=MAX_CHARS_PER_WORD * _MAX_UTF8_BYTES_PER_CHAR,
                token_out_type=tf.int64,
                unknown_token=self.unk_token,
                no_pretokenization=True,
            )
            fixes = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(_FIXES), tf.string), tf.constant(list(_FIXES.values()), tf.string)
                ),
                default_value="",
            )
        # One trace per tokenizer (the signature fits any batch). No autograph:
        # the graph has no tensor-dependent Python control flow, and converting
        # the source cost ~1.1 of the trace's ~1.4 CPU-s, in every process.
        encode_flat = tf.function(
            self._tf_encode_flat, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )
        return wordpiece, fixes, encode_flat

    @property
    def graph_resources(self) -> tuple:
        """(wordpiece trie, lower-casing fixes table): the TF resources the graph
        reads, for a `tf.Module` (a SavedModel) to track."""
        return self._graph_parts[:2]

    # ---- in-graph (usable inside tf.data.Dataset.map) ----

    def tf_normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """BERT's text normalization: tf.string [n] (any bytes) -> tf.string [n] (UTF-8)."""
        texts = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        texts = tf.strings.regex_replace(texts, _DROP_RE, "")
        texts = tf.strings.regex_replace(texts, _WHITESPACE_RE, " ")
        return self._uncase(texts) if self.lower_case else texts

    def tf_split_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Normalized words: tf.string [n] -> RaggedTensor[string, [n, words]]."""
        return tf_text.regex_split(self.tf_normalize(texts), " +|" + _OWN_WORD_RE, _OWN_WORD_RE)

    def tf_encode_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """WordPiece ids per word: tf.string [n] -> RaggedTensor[int64, [n, words, pieces]]."""
        words = self.tf_split_words(texts)
        flat = words.flat_values
        too_long = tf.strings.length(flat, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        # "[UNK]" is a vocab entry, so it WordPieces to exactly [unk_id]; no
        # real word can equal it because "[" and "]" are split off.
        flat = tf.where(too_long, tf.constant(self.unk_token), flat)
        return words.with_flat_values(self._graph_parts[0].tokenize(flat))

    def tf_encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """WordPiece ids: tf.string [n] -> RaggedTensor[int64, [n, pieces]]; a scalar gives [pieces]."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if texts.shape.rank == 0:
            return self.tf_encode(texts[tf.newaxis])[0]
        return self.tf_encode_words(texts).merge_dims(1, 2)

    def _uncase(self, texts: tf.Tensor) -> tf.Tensor:
        """NFD, drop Mn, lowercase, [n] -> [n]; rows with a _LOWERCASE_FIXES char go char by char."""
        needs_fix = tf.cast(tf.strings.regex_full_match(texts, _FIX_ROW_RE), tf.int32)
        rows = tf.range(tf.size(texts))
        plain, special = tf.dynamic_partition(texts, needs_fix, 2)
        plain_rows, special_rows = tf.dynamic_partition(rows, needs_fix, 2)
        return tf.dynamic_stitch(
            [plain_rows, special_rows], [self._uncase_icu(plain), self._uncase_by_char(special)]
        )

    @staticmethod
    def _uncase_icu(texts: tf.Tensor) -> tf.Tensor:
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, _NONSPACING_MARK_RE, "")
        # ICU lowercases a word-final capital sigma to "ς"; the reference maps
        # each character on its own, always to "σ".
        texts = tf.strings.regex_replace(texts, "Σ", "σ")
        return tf.strings.lower(texts, encoding="utf-8")

    def _uncase_by_char(self, texts: tf.Tensor) -> tf.Tensor:
        chars = tf.strings.unicode_split(texts, "UTF-8")
        folded = self._uncase_icu(chars.flat_values)
        fixed = self._graph_parts[1].lookup(chars.flat_values)
        folded = tf.where(tf.equal(fixed, ""), folded, fixed)
        return tf.strings.reduce_join(chars.with_flat_values(folded), axis=1)

    def _tf_encode_flat(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ids = self.tf_encode(texts)
        return ids.flat_values, ids.row_splits

    def _encode_chunk(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        # The reference's own pipeline (see `_reference_wordpiece`): the same
        # ids as the graph below (tests/test_tokenization.py checks both
        # against BertTokenizerFast), without importing TensorFlow.
        encodings = self._rust.encode_batch([_as_valid_text(t) for t in texts], add_special_tokens=False)
        return _ragged_to_numpy([e.ids for e in encodings])

    def graph_encode_flat(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_flat` through the TensorFlow graph that `tf_encode` runs (same ids)."""
        chunk = [_as_utf8_bytes(t) for t in texts]
        ids, splits = self._graph_parts[2](tf.constant(chunk, tf.string, shape=[len(chunk)]))
        return ids.numpy(), splits.numpy()


def _reference_wordpiece(ids: dict[str, int], unk_token: str, lower_case: bool):
    """Hugging Face `tokenizers`' BertNormalizer + BertPreTokenizer + WordPiece:
    BertTokenizerFast's pipeline without its added special tokens (so text
    spelling "[MASK]" stays ordinary text, as in google-research BERT)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece(ids, unk_token=unk_token, max_input_chars_per_word=MAX_CHARS_PER_WORD))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lower_case
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def _as_valid_text(text: str | bytes) -> str:
    """Text `tokenizers` accepts: bytes that are not UTF-8 (and a str's lone
    surrogates) become U+FFFD, which the normalizer drops, as the graph does.
    `_as_text` (the other kinds' conversion) plus the surrogates."""
    text = _as_text(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", errors="replace")
    return text


# --------------------------------------------------------------------------
# The rest of the family: SentencePiece (XLM-R, CamemBERT, ALBERT) and
# byte-level BPE (RoBERTa), behind the same interface. docs/family.md.

SPIECE_WORD_START = "\u2581"  # "▁": a SentencePiece piece that starts a word
BYTE_BPE_WORD_START = "\u0120"  # "Ġ": byte-level BPE's encoding of a leading space

# Hugging Face's id layouts around a SentencePiece model (transformers'
# XLMRobertaConverter / CamembertConverter / AlbertConverter): the ids before
# the model's pieces, the first piece kept, and the special tokens by role.
_SPM_FLAVORS = {
    "xlmr": (("<s>", "<pad>", "</s>", "<unk>"), 3),
    "camembert": (("<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<unk>NOTUSED"), 1),
    "albert": ((), 0),
}
_SPECIALS_BY_FLAVOR = {  # (pad, unk, cls, sep, mask) tokens
    "xlmr": ("<pad>", "<unk>", "<s>", "</s>", "<mask>"),
    "camembert": ("<pad>", "<unk>", "<s>", "</s>", "<mask>"),
    "albert": ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
    "roberta": ("<pad>", "<unk>", "<s>", "</s>", "<mask>"),
}
# What Python's str.split() splits on (AlbertTokenizer collapses these to " ").
_PY_WHITESPACE = "9-d 1c-20 85 a0 1680 2000-200a 2028-2029 202f 205f 3000 "


@functools.cache
def _combining_class() -> str:
    """RE2 class of the characters Python's `unicodedata.combining` calls
    combining (what AlbertTokenizer strips after NFKD; not the same as Mn)."""
    code_points = [cp for cp in range(0x110000) if unicodedata.combining(chr(cp))]
    ranges, start = [], code_points[0]
    for prev, cp in zip(code_points, code_points[1:] + [None], strict=True):
        if cp != prev + 1:
            ranges.append(f"{start:x}-{prev:x}")
            start = cp
    return _regex_class(" ".join(ranges))


def albert_preprocess(text: str, lower_case: bool = True, keep_accents: bool = False) -> str:
    """AlbertTokenizer.preprocess_text: whitespace collapsed, ``/'' -> ",
    NFKD with combining characters dropped (unless keep_accents), lowercased.

    Uncased, AlbertTokenizer.tokenize first lowercases character by character
    (so "Σ" is always "σ", never the word-final "ς" of str.lower), then
    preprocesses; the same here."""
    if lower_case:
        text = text.replace("Σ", "σ").lower()
    text = " ".join(text.strip().split()).replace("``", '"').replace("''", '"')
    if not keep_accents:
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.lower() if lower_case else text


def _albert_digit_comma_splits(sp, pieces: list[str]) -> dict[int, list[int]]:
    """{spm id: spm ids} for the pieces ending in a digit and "," (e.g. "▁9,"):
    AlbertTokenizer (and ALBERT's own `encode_pieces`) re-encodes such a piece
    without the comma and its "▁", then appends ","; "9,9" is "▁9 , 9", not
    "▁9, 9". It depends on the piece alone, so it is a table over the vocab."""
    splits = {}
    for i, piece in enumerate(pieces):
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit() and not sp.is_control(i):
            again = sp.encode(piece[:-1].replace(SPIECE_WORD_START, ""), out_type=str)
            if piece[0] != SPIECE_WORD_START and again[0][0] == SPIECE_WORD_START:
                again = again[1:] if len(again[0]) == 1 else [again[0][1:], *again[1:]]
            splits[i] = [sp.piece_to_id(p) for p in [*again, piece[-1]]]
    return splits


def _sha256_of_files(*paths: str) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _as_text(text: str | bytes) -> str:
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text


def _ragged_to_numpy(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    splits = np.zeros(len(rows) + 1, np.int64)
    splits[1:] = np.cumsum([len(r) for r in rows])
    ids = np.fromiter((i for r in rows for i in r), np.int64, count=int(splits[-1]))
    return ids, splits


def _set_specials(tokenizer: _TokenizerBase, flavor: str, source: str) -> None:
    """pad/unk/cls/sep/mask ids from the flavor's special tokens; DataError naming the missing."""
    tokens = _SPECIALS_BY_FLAVOR[flavor]
    missing = [t for t in tokens if t not in tokenizer._ids]
    if missing:
        raise DataError(
            f"{source}: lacks the special token(s) {' '.join(missing)} a {flavor} vocabulary needs; "
            "re-train it with them as user-defined symbols"
        )
    tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id = (
        tokenizer._ids[t] for t in tokens
    )
    tokenizer.unk_token = tokens[1]


def _load_sentencepiece(model_file: str):
    """(SentencePieceProcessor, the model's bytes); DataError naming the file."""
    import sentencepiece

    try:
        with open(model_file, "rb") as f:
            data = f.read()
        return sentencepiece.SentencePieceProcessor(model_proto=data), data
    except (OSError, RuntimeError) as e:
        raise DataError(
            f"SentencePiece model {model_file}: cannot load it ({e}); pass a .model file"
        ) from None


class SentencePieceTokenizer(_TokenizerBase):
    """A SentencePiece model (unigram or BPE) with Hugging Face's ids for a flavor.

    `flavor`: "xlmr" (XLM-R: <s> <pad> </s> <unk>, pieces from id 3 shifted by
    one, <mask> last), "camembert" (five reserved ids, pieces shifted by four,
    <mask> last) or "albert" (the model's own ids; text is whitespace-collapsed,
    NFKD + accent-stripped unless `keep_accents`, lowercased if `lower_case`).
    `encode` runs the sentencepiece library and equals the (slow)
    XLMRobertaTokenizer / CamembertTokenizer / AlbertTokenizer ids; `tf_encode`
    runs tensorflow-text's SentencePiece in-graph (docs/family.md lists where
    the two may differ: equal-score segmentations).
    """

    kind = "sentencepiece"

    def __init__(
        self, model_file: str, flavor: str = "xlmr", lower_case: bool | None = None, keep_accents=False
    ):
        if flavor not in _SPM_FLAVORS:
            raise DataError(f"SentencePiece flavor {flavor!r}; expected one of {sorted(_SPM_FLAVORS)}")
        self.model_file = self.vocab_file = model_file
        self.flavor = flavor
        self.lower_case = (
            bool(lower_case) if flavor == "albert" and lower_case is not None else flavor == "albert"
        )
        self.keep_accents = keep_accents
        self._sp, self._model_bytes = _load_sentencepiece(model_file)
        self.vocab_sha256 = hashlib.sha256(self._model_bytes).hexdigest()
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        reserved, first = _SPM_FLAVORS[flavor]
        if flavor != "albert" and pieces[:3] != ["<unk>", "<s>", "</s>"]:
            raise DataError(
                f"SentencePiece model {model_file}: ids 0-2 are {pieces[:3]}, a {flavor} vocabulary needs "
                "<unk> <s> </s> there; train with --unk_id=0 --bos_id=1 --eos_id=2"
            )
        self.vocab = list(reserved) + pieces[first:] + (["<mask>"] if flavor != "albert" else [])
        self._ids = {t: i for i, t in reversed(list(enumerate(self.vocab)))}
        _set_specials(self, flavor, f"SentencePiece model {model_file}")
        self.vocab_size = len(self.vocab)
        # spm id -> our id: the model's pieces shift by the reserved ids; its <unk> is ours.
        shift = len(reserved) - first
        self._spm_to_ours = np.arange(len(pieces), dtype=np.int64) + shift
        self._spm_to_ours[self._sp.unk_id()] = self.unk_id
        # spm id -> our ids it stands for: one each, except ALBERT's digit-comma pieces.
        self._expansion = _albert_digit_comma_splits(self._sp, pieces) if flavor == "albert" else {}
        self._expand_values, self._expand_splits = _ragged_to_numpy(
            [[*self._spm_to_ours[self._expansion.get(i, [i])]] for i in range(len(pieces))]
            if self._expansion
            else []
        )
        self.is_continuation_id = np.array(
            [not t.startswith(SPIECE_WORD_START) for t in self.vocab], dtype=bool
        )
        self.is_continuation_id[[self._ids[t] for t in _SPECIALS_BY_FLAVOR[flavor]]] = False
        # Built here, eagerly: one built while tracing a tf.data map would be
        # tied to that graph.
        self._tf_model = tf_text.SentencepieceTokenizer(model=self._model_bytes, out_type=tf.int32)

    # ---- Python ----

    def _normalize(self, text: str) -> str:
        """AlbertTokenizer.preprocess_text; identity for the other flavors."""
        if self.flavor != "albert":
            return text
        return albert_preprocess(text, self.lower_case, self.keep_accents)

    def _encode_chunk(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        rows = self._sp.encode([self._normalize(_as_text(t)) for t in texts])
        ids, splits = _ragged_to_numpy(rows)
        if not self._expansion:
            return self._spm_to_ours[ids], splits
        # Each spm id becomes its row of the expansion table (one id, or an
        # ALBERT digit-comma piece's re-split), rows concatenated.
        starts, lengths = self._expand_splits[ids], np.diff(self._expand_splits)[ids]
        ends = np.cumsum(lengths)
        within = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths)
        new_ids = self._expand_values[np.repeat(starts, lengths) + within]
        return new_ids, np.concatenate([[0], ends])[splits]

    # ---- in-graph ----

    def tf_normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """`_normalize` in TF ops: tf.string [n] -> [n] (ALBERT only; else as is)."""
        texts = tf.strings.unicode_transcode(
            texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        if self.flavor != "albert":
            return texts
        if self.lower_case:  # character by character first, as albert_preprocess
            texts = tf.strings.lower(tf.strings.regex_replace(texts, "Σ", "σ"), encoding="utf-8")
        texts = tf.strings.regex_replace(texts, _regex_class(_PY_WHITESPACE) + "+", " ")
        texts = tf.strings.regex_replace(texts, "^ | $", "")
        texts = tf.strings.regex_replace(texts, "``|''", '"')
        if not self.keep_accents:
            texts = tf.strings.regex_replace(tf_text.normalize_utf8(texts, "NFKD"), _combining_class(), "")
        return tf.strings.lower(texts, encoding="utf-8") if self.lower_case else texts

    def tf_encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids: tf.string [n] -> RaggedTensor[int64, [n, pieces]]; a scalar gives [pieces]."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if texts.shape.rank == 0:
            return self.tf_encode(texts[tf.newaxis])[0]
        pieces = self._tf_model.tokenize(self.tf_normalize(texts))
        if not self._expansion:
            return pieces.with_flat_values(tf.gather(tf.constant(self._spm_to_ours), pieces.flat_values))
        table = tf.RaggedTensor.from_row_splits(
            tf.constant(self._expand_values), tf.constant(self._expand_splits)
        )
        return pieces.with_flat_values(tf.gather(table, pieces.flat_values)).merge_dims(1, 2)


class ByteBPETokenizer(_TokenizerBase):
    """RoBERTa / GPT-2 byte-level BPE (`vocab.json` + `merges.txt`), run by
    Hugging Face `tokenizers` with RobertaTokenizerFast's model and
    pre-tokenizer, so the ids are the reference's. Text spelling a special
    token ("<mask>") is ordinary text. `tf_encode` wraps it in
    `tf.py_function` (runs in tf.data, but not in a serialized graph)."""

    kind = "byte_bpe"
    lower_case = False
    flavor = "roberta"

    def __init__(self, vocab_file: str, merges_file: str):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        self.vocab_file, self.merges_file = vocab_file, merges_file
        try:
            with open(vocab_file, encoding="utf-8") as f:
                token_ids = json.load(f)
            bpe = models.BPE.from_file(
                vocab_file, merges_file, continuing_subword_prefix="", end_of_word_suffix=""
            )
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise DataError(
                f"byte-level BPE {vocab_file} + {merges_file}: cannot load them ({e}); pass a GPT-2/RoBERTa "
                "vocab.json and merges.txt"
            ) from None
        self.vocab = [""] * (max(token_ids.values()) + 1)
        for token, i in token_ids.items():
            self.vocab[i] = token
        self._ids = {t: i for i, t in enumerate(self.vocab)}
        _set_specials(self, "roberta", f"vocab {vocab_file}")
        self.vocab_size = len(self.vocab)
        self.vocab_sha256 = _sha256_of_files(vocab_file, merges_file)
        self._tokenizer = Tokenizer(bpe)
        self._tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tokenizer.decoder = decoders.ByteLevel()
        self.is_continuation_id = np.array(
            [not t.startswith(BYTE_BPE_WORD_START) for t in self.vocab], dtype=bool
        )
        self.is_continuation_id[[self._ids[t] for t in _SPECIALS_BY_FLAVOR["roberta"]]] = False

    def _encode_chunk(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self._tokenizer.encode_batch([_as_text(t) for t in texts], add_special_tokens=False)
        return _ragged_to_numpy([e.ids for e in encodings])

    def tf_encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids: tf.string [n] -> RaggedTensor[int64, [n, pieces]]; a scalar gives [pieces]."""
        return _tf_encode_in_python(self, texts)


def _tf_encode_in_python(tokenizer: _TokenizerBase, texts: tf.Tensor) -> tf.RaggedTensor:
    """`tokenizer._encode_chunk` as a TF op (`tf.py_function`): tf.string [n]
    -> RaggedTensor[int64, [n, pieces]]; a scalar gives [pieces]."""
    texts = tf.convert_to_tensor(texts, tf.string)
    if texts.shape.rank == 0:
        return _tf_encode_in_python(tokenizer, texts[tf.newaxis])[0]

    def encode(batch):
        return tokenizer._encode_chunk(batch.numpy().tolist())

    ids, splits = tf.py_function(encode, [texts], [tf.int64, tf.int64])
    return tf.RaggedTensor.from_row_splits(tf.ensure_shape(ids, [None]), tf.ensure_shape(splits, [None]))


TOKENIZER_JSON = "tokenizer.json"
# Spellings of each special role in a tokenizer.json, tried in order when the
# folder's settings do not name the role (tokenizer_config.json `cls_token`,
# config.json `cls_token_id`): ModernBERT / BERT's, then RoBERTa's.
_ROLE_SPELLINGS = {
    "pad": ("[PAD]", "<pad>", "<|padding|>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
}


class TokenizerJson(_TokenizerBase):
    """Whatever a Hugging Face `tokenizer.json` defines (ModernBERT's byte-level
    BPE with its added tokens; any other `tokenizers` pipeline too), run by the
    `tokenizers` library itself, so the ids are transformers'
    `PreTrainedTokenizerFast`'s (called with `split_special_tokens=True`: text
    spelling a special token such as "[MASK]" is ordinary text, as in the
    other kinds). Added tokens that are not special (ModernBERT's runs of
    spaces) are matched in text, as transformers does.

    The special ids come from the folder's `settings` (tokenizer_config.json
    `mask_token` etc., config.json `pad_token_id` etc.) where they name them,
    else from the usual spellings (`_ROLE_SPELLINGS`). `flavor` is "roberta"
    when the post-processor builds RoBERTa's `<s> A </s></s> B </s>` pairs, else
    "bert" (`[CLS] A [SEP] B [SEP]`). `tf_encode` wraps `encode` in
    `tf.py_function`, as the byte-level BPE kind does."""

    kind = "tokenizer_json"
    lower_case = False  # the file's own normalizer decides; no bert-jax casing applies

    def __init__(self, path: str, settings: dict | None = None):
        from tokenizers import Tokenizer

        self.vocab_file = str(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
            spec = json.loads(data)
            self._tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # OSError, bad JSON, or tokenizers' bare Exception on a bad pipeline
            raise DataError(
                f"tokenizer {path}: cannot load it ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                "pass a Hugging Face tokenizer.json"
            ) from None
        self.vocab_sha256 = hashlib.sha256(data).hexdigest()
        # Ids of the text alone: no template, truncation or padding from the file.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._tokenizer.encode_special_tokens = True
        token_ids = self._tokenizer.get_vocab(with_added_tokens=True)
        self.vocab = [""] * (max(token_ids.values()) + 1)
        for token, i in token_ids.items():
            self.vocab[i] = token
        self._ids = {t: i for i, t in enumerate(self.vocab) if t}
        self.vocab_size = len(self.vocab)
        roles = _special_roles(self._ids, settings or {}, path)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            roles[r] for r in ("pad", "unk", "cls", "sep", "mask")
        )
        self.unk_token = self.vocab[self.unk_id]
        post = spec.get("post_processor") or {}
        self.flavor = "roberta" if post.get("type") == "RobertaProcessing" else "bert"
        self.is_continuation_id = _continuation_ids(spec, self.vocab)
        specials = [t["id"] for t in spec.get("added_tokens") or [] if t.get("special")]
        self.is_continuation_id[[*specials, *roles.values()]] = False

    def _encode_chunk(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self._tokenizer.encode_batch([_as_text(t) for t in texts], add_special_tokens=False)
        return _ragged_to_numpy([e.ids for e in encodings])

    def tf_encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids: tf.string [n] -> RaggedTensor[int64, [n, pieces]]; a scalar gives [pieces]."""
        return _tf_encode_in_python(self, texts)


def _special_roles(ids: dict[str, int], settings: dict, path) -> dict[str, int]:
    """{role: id} for pad/unk/cls/sep/mask: the settings' `<role>_token`
    (a string, or {"content": ...}) or `<role>_token_id`, else the first
    `_ROLE_SPELLINGS` spelling the vocabulary has; DataError naming a role
    found nowhere."""
    roles = {}
    for role, spellings in _ROLE_SPELLINGS.items():
        named = settings.get(f"{role}_token")
        named = named.get("content") if isinstance(named, dict) else named
        if isinstance(named, str) and named in ids:
            roles[role] = ids[named]
            continue
        given = settings.get(f"{role}_token_id")
        if isinstance(given, int) and not isinstance(given, bool) and 0 <= given < max(ids.values()) + 1:
            roles[role] = given
            continue
        found = next((ids[s] for s in spellings if s in ids), None)
        if found is None:
            raise DataError(
                f"tokenizer {path}: no {role} token ({' or '.join(spellings)}) among its tokens; name it as "
                f'"{role}_token" in tokenizer_config.json beside it'
            )
        roles[role] = found
    return roles


def _continuation_ids(spec: dict, vocab: list[str]) -> np.ndarray:
    """`[vocab]` bool: the token continues a word (for whole-word masking):
    WordPiece pieces with its continuation prefix ("##"); else pieces without
    the word-start mark, "▁" where the pipeline uses Metaspace, byte-level
    BPE's "Ġ" otherwise."""
    model = spec.get("model") or {}
    if model.get("type") == "WordPiece":
        prefix = model.get("continuing_subword_prefix") or "##"
        return np.array([t.startswith(prefix) for t in vocab], dtype=bool)
    pipeline = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    start = SPIECE_WORD_START if '"Metaspace"' in pipeline else BYTE_BPE_WORD_START
    return np.array([bool(t) and not t.startswith(start) for t in vocab], dtype=bool)


# --------------------------------------------------------------------------
# One factory

_TOKENIZER_CLASSES = {  # Hugging Face tokenizer_class -> SentencePiece flavor
    "XLMRobertaTokenizer": "xlmr",
    "CamembertTokenizer": "camembert",
    "AlbertTokenizer": "albert",
}
_MODEL_TYPES = {"xlm-roberta": "xlmr", "camembert": "camembert", "albert": "albert"}


def _folder_settings(folder: pathlib.Path) -> dict:
    """tokenizer_config.json over config.json (HF) over model_config.json (a
    bert-jax checkpoint) of a folder, merged; {} when none is there."""
    settings = {}
    for name in ("model_config.json", "config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            try:
                settings.update(json.loads(path.read_text("utf-8")))
            except ValueError as e:
                raise DataError(f"{path} is not readable JSON ({e}); re-create it") from None
    return settings


def _spm_flavor(settings: dict, model_file: str, flavor: str | None) -> str:
    if flavor:
        return flavor
    cls = str(settings.get("tokenizer_class", "")).removesuffix("Fast")
    if cls in _TOKENIZER_CLASSES:
        return _TOKENIZER_CLASSES[cls]
    if settings.get("model_type") in _MODEL_TYPES:
        return _MODEL_TYPES[settings["model_type"]]
    if settings.get("family") in _SPM_FLAVORS:  # a bert-jax model checkpoint's model_config.json
        return settings["family"]
    sp, _ = _load_sentencepiece(model_file)
    return "albert" if sp.piece_to_id("[CLS]") != sp.unk_id() else "xlmr"


def load_tokenizer(path: str, lower_case: bool | None = None, flavor: str | None = None) -> _TokenizerBase:
    """The tokenizer a file or folder holds, its kind picked from the files:
    `vocab.txt` (WordPiece), `vocab.json` + `merges.txt` (byte-level BPE), a
    SentencePiece `*.model`, a Hugging Face `tokenizer.json`, or a folder
    holding one of these (a ModernBERT folder: its tokenizer.json first; any
    other: tokenizer.json only when none of the others is there).

    `lower_case` None: the folder's tokenizer_config.json `do_lower_case`, else
    the kind's default (WordPiece and ALBERT lowercase; a tokenizer.json
    normalizes as it says). `flavor` picks a SentencePiece id layout ("xlmr",
    "camembert", "albert"); None: from the folder's tokenizer_class /
    model_type / bert-jax model family, else "albert" if the model has
    [CLS], else "xlmr".
    """
    p = pathlib.Path(path)
    folder = p if p.is_dir() else p.parent
    settings = _folder_settings(folder) if p.is_dir() or p.name == TOKENIZER_JSON else {}
    if lower_case is None:
        lower_case = settings.get("do_lower_case")
    if p.is_dir():
        p = _tokenizer_file_of(p, settings)
    if not p.is_file():
        raise DataError(
            f"vocab {p}: no such file; pass a vocab.txt, vocab.json (+ merges.txt), *.model or tokenizer.json"
        )
    if p.name == TOKENIZER_JSON:
        return TokenizerJson(str(p), settings)
    if p.name.endswith(".json"):
        merges = p.parent / "merges.txt"
        if not merges.is_file():
            raise DataError(
                f"{p.parent}: {p.name} needs merges.txt beside it for byte-level BPE; copy it there"
            )
        return ByteBPETokenizer(str(p), str(merges))
    if p.suffix == ".model":
        flavor = _spm_flavor(settings, str(p), flavor)
        keep_accents = bool(settings.get("keep_accents", False))
        return SentencePieceTokenizer(str(p), flavor, lower_case=lower_case, keep_accents=keep_accents)
    return WordPieceTokenizer(str(p), lower_case=True if lower_case is None else bool(lower_case))


def _tokenizer_file_of(folder: pathlib.Path, settings: dict) -> pathlib.Path:
    """The file `load_tokenizer` reads in a tokenizer folder; DataError when none is there."""
    tokenizer_json = folder / TOKENIZER_JSON
    modernbert = "modernbert" in (settings.get("model_type"), settings.get("family"))
    if modernbert and tokenizer_json.is_file():
        return tokenizer_json
    models = sorted(folder.glob("*.model"))
    if (folder / "vocab.json").is_file():
        return folder / "vocab.json"
    if models:
        return models[0]
    if (folder / "vocab.txt").is_file():
        return folder / "vocab.txt"
    if str(settings.get("tokenizer_class", "")).removesuffix("Fast") in _TOKENIZER_CLASSES:
        raise DataError(
            f"{folder}: tokenizer_class {settings['tokenizer_class']} needs a SentencePiece .model file "
            "(sentencepiece.bpe.model / spiece.model); copy it into the folder"
        )
    if tokenizer_json.is_file():
        return tokenizer_json
    raise DataError(
        f"{folder} holds no tokenizer: expected vocab.txt (WordPiece), vocab.json + merges.txt "
        "(byte-level BPE), a SentencePiece *.model or a Hugging Face tokenizer.json"
    )
