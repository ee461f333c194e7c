"""Corpus sources and sentence segmentation (bert_jax.data.corpus, bert_jax.data.segment)."""

from __future__ import annotations

import gzip

import pytest

from bert_jax.data import corpus, segment
from bert_jax.errors import DataError


def _write(path, text: str | bytes):
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(data)
    return str(path)


def _docs(spec, **kwargs):
    stats = corpus.CorpusStats()
    return list(corpus.iter_documents(spec, stats=stats, **kwargs)), stats


# ---- segmentation ----


def test_hard_wrapped_lines_are_joined_before_splitting():
    lines = ["The cat sat on", "the mat. It was", "happy.", "", "New paragraph here."]
    paragraphs = list(segment.paragraphs(lines))
    assert paragraphs == ["The cat sat on the mat. It was happy.", "New paragraph here."]
    assert segment.split_sentences(paragraphs[0]) == (["The cat sat on the mat.", "It was happy."], 0)


def test_split_long_cuts_at_spaces_within_the_limit():
    pieces = segment.split_long("aaaa bbbb cccc dddd", max_chars=9)
    assert pieces == ["aaaa bbbb", "cccc dddd"]
    assert segment.split_long("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


# ---- local files ----


def test_file_format_is_one_document_per_file(tmp_path):
    _write(tmp_path / "a.txt", "First one. Second\none.\n\nThird one.\n")
    _write(tmp_path / "b.txt", "Only sentence here.\n")
    docs, stats = _docs(str(tmp_path / "*.txt"), format="file")
    # Keys are relative to the glob's directory: moving the corpus keeps them.
    assert [d.key for d in docs] == ["a.txt", "b.txt"]
    assert docs[0].sentences == ["First one.", "Second one.", "Third one."]
    assert (stats.documents, stats.sentences, stats.files) == (2, 4, 2)
    assert stats.skipped["one_sentence_documents"] == 1


def test_paragraphs_format_makes_a_document_per_paragraph(tmp_path):
    path = _write(tmp_path / "p.txt", "One. Two.\n\n\nThree\nfour.\n")
    docs, _ = _docs(path, format="paragraphs")
    assert docs == [
        corpus.Document("p.txt#0", ["One.", "Two."]),
        corpus.Document("p.txt#1", ["Three four."]),
    ]


def test_sentences_format_is_the_original_bert_layout(tmp_path):
    path = _write(tmp_path / "s.txt", "a b c\nd e. f g.\n\n\ng h\n")
    docs, _ = _docs(path, format="sentences")
    # One line is one sentence, even with two full stops on it.
    assert docs == [
        corpus.Document("s.txt#0", ["a b c", "d e. f g."]),
        corpus.Document("s.txt#1", ["g h"]),
    ]


def test_auto_tells_sentence_per_line_from_wrapped_prose(tmp_path):
    sentences = _write(tmp_path / "s.txt", "".join(f"This is sentence {i}.\n" for i in range(30)))
    prose = _write(tmp_path / "p.txt", "This is a long sentence that was\nwrapped by an editor at a\nfixed width.\n" * 10)
    assert corpus._sniff_format(sentences) == "sentences"
    assert corpus._sniff_format(prose) == "file"


def test_glob_root_is_the_directory_before_the_first_wildcard():
    assert corpus._glob_root("/data/books/train/*.txt") == "/data/books/train"
    assert corpus._glob_root("/data/*/train/a.txt") == "/data"
    assert corpus._glob_root("/data/books/one.txt") == "/data/books"


def test_gzip_and_comma_separated_globs(tmp_path):
    with gzip.open(tmp_path / "z.txt.gz", "wt", encoding="utf-8") as f:
        f.write("Zipped text. Two sentences.\n")
    plain = _write(tmp_path / "p.txt", "Plain text.\n")
    docs, _ = _docs(f"{tmp_path}/*.gz,{plain}", format="file")
    assert [d.sentences for d in docs] == [["Zipped text.", "Two sentences."], ["Plain text."]]


def test_a_glob_matching_nothing_is_a_one_line_error(tmp_path):
    pattern = str(tmp_path / "nothing-*.txt")
    with pytest.raises(DataError, match="matches no file") as info:
        list(corpus.iter_documents(pattern))
    assert pattern in str(info.value) and "\n" not in str(info.value)


def test_unknown_format_and_builtin_are_errors(tmp_path):
    with pytest.raises(DataError, match="format 'csv'"):
        list(corpus.iter_documents(str(tmp_path), format="csv"))
    with pytest.raises(DataError, match="unknown built-in"):
        list(corpus.iter_documents("builtin:nope"))


def test_empty_files_and_empty_documents_are_counted_skips(tmp_path):
    _write(tmp_path / "a-empty.txt", "")
    _write(tmp_path / "b-blank.txt", "\n\n   \n")
    _write(tmp_path / "c-ok.txt", "Some text.\n")
    docs, stats = _docs(str(tmp_path / "*.txt"), format="file")
    assert [d.sentences for d in docs] == [["Some text."]]
    assert stats.skipped["empty_files"] == 1
    assert stats.skipped["empty_documents"] == 1
    assert stats.first_seen["empty_files"] == str(tmp_path / "a-empty.txt")


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    path = _write(tmp_path / "bad.txt", b"Good line.\nBad \xff\xfe byte.\n")
    docs, stats = _docs(path, format="sentences")
    assert docs[0].sentences == ["Good line.", "Bad \ufffd\ufffd byte."]
    assert stats.skipped["non_utf8_lines"] == 1
    assert stats.first_seen["non_utf8_lines"] == f"{path}:2"


def test_a_ten_megabyte_line_is_cut_and_counted(tmp_path):
    path = _write(tmp_path / "huge.txt", "word " * 2_000_000 + "\nNext line.\n")
    docs, stats = _docs(path, format="file")
    sentences = docs[0].sentences
    assert stats.skipped["long_lines_cut"] == 1
    assert stats.skipped["long_sentences_cut"] >= 1
    assert max(len(s) for s in sentences) <= segment.MAX_SENTENCE_CHARS
    assert sentences[-1] == "Next line."
    # Nothing lost but spaces at the cuts.
    assert sum(s.count("word") for s in sentences) == 2_000_000


# ---- TensorFlow Datasets ----


def test_tfds_source_reads_the_feature_of_each_example():
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    texts = ["First doc. It has two.\n\nAnd a paragraph.", "Second doc."]

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"text": texts, "label": [0, 1]})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        docs, stats = _docs("tfds:imdb_reviews:text@/nonexistent")
        assert docs == [
            corpus.Document("tfds:imdb_reviews:train:0", ["First doc.", "It has two.", "And a paragraph."]),
            corpus.Document("tfds:imdb_reviews:train:1", ["Second doc."]),
        ]
        with pytest.raises(DataError, match="no feature 'body'"):
            list(corpus.iter_documents("tfds:imdb_reviews:body"))


def test_tfds_spec_parsing():
    assert corpus.parse_tfds_spec("tfds:wikipedia/20230601.en:text") == ("wikipedia/20230601.en", "text", "train", None)
    assert corpus.parse_tfds_spec("tfds:c4/en:text:validation@/data") == ("c4/en", "text", "validation", "/data")
    with pytest.raises(DataError, match="tfds:NAME:FEATURE"):
        corpus.parse_tfds_spec("tfds:wikipedia")


# ---- built-in ----


@pytest.fixture(scope="session")
def stdlib_docs():
    stats = corpus.CorpusStats()
    return list(corpus.iter_documents(corpus.BUILTIN_STDLIB_DOCS, stats=stats)), stats


def test_builtin_stdlib_docs_is_megabytes_of_text(stdlib_docs):
    docs, stats = stdlib_docs
    assert stats.characters > 1_500_000
    assert stats.documents > 300
    keys = [d.key for d in docs]
    assert len(set(keys)) == len(keys)
    assert "stdlib:json" in keys


def test_builtin_stdlib_docs_is_deterministic(stdlib_docs):
    docs, _ = stdlib_docs
    again = []
    for doc in corpus.iter_documents(corpus.BUILTIN_STDLIB_DOCS):
        again.append(doc)
        if len(again) == 40:
            break
    assert again == docs[:40]


# ---- the shared books (skipped where absent) ----


def test_shared_books_read_as_one_document_per_book(shared_dir):
    books = sorted((shared_dir / "data" / "books" / "eval").glob("*"))
    if not books:
        pytest.skip("no books under shared/data/books/eval")
    docs, stats = _docs(str(books[0]))
    assert len(docs) == 1 and docs[0].key == books[0].name
    assert stats.sentences > 100
