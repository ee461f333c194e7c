"""`bert-jax extract-features` against the original's output format and against
`transformers` (tokens from BertTokenizer, values from BertModel's hidden states)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from xla_env import xla_flags

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from bert_jax import checkpoints, features, tokenization  # noqa: E402
from bert_jax.errors import UserError  # noqa: E402

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "a", ".", ",", "##s", "play", "##ed", "and"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
LINES = ["The cat sat on the mat.", "the dogs ran ||| a cat played", "Cats, dogs and a MAT", "zebra"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random 3-layer HF BertModel with its vocab and do_lower_case=true."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    folder = tmp_path_factory.mktemp("features") / "hf"
    transformers.BertModel(config).eval().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return folder


@pytest.fixture(scope="module")
def tokenizer(hf_folder):
    return tokenization.WordPieceTokenizer(str(hf_folder / "vocab.txt"), lower_case=True)


@pytest.fixture(scope="module")
def loaded(hf_folder):
    return checkpoints.load_model(hf_folder)


@pytest.fixture(scope="module")
def extractor(loaded):
    cfg, params, _ = loaded
    return features.FeatureExtractor(cfg, params, [-1, -2, 0], max_seq_length=16, batch_size=3)


@pytest.fixture(scope="module")
def outputs(tokenizer, extractor):
    return list(features.extract_features(LINES, tokenizer, extractor))


def _reference(hf_folder, line):
    """transformers' tokens and hidden states (embeddings first) for one line."""
    tok = transformers.BertTokenizer(str(hf_folder / "vocab.txt"), do_lower_case=True)
    model = transformers.BertModel.from_pretrained(hf_folder).eval()
    parts = line.split(" ||| ")
    enc = tok(*parts, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0])
    return tokens, [h[0].numpy() for h in hidden]


def test_one_object_per_line_in_the_original_format(outputs):
    assert [o["linex_index"] for o in outputs] == [0, 1, 2, 3]
    first = outputs[0]
    assert sorted(first) == ["features", "linex_index"]
    assert [f["token"] for f in first["features"]] == [
        "[CLS]",
        "the",
        "cat",
        "sat",
        "on",
        "the",
        "mat",
        ".",
        "[SEP]",
    ]
    for feature in first["features"]:
        assert sorted(feature) == ["layers", "token"]
        assert [layer["index"] for layer in feature["layers"]] == [-1, -2, 0]
        for layer in feature["layers"]:
            assert sorted(layer) == ["index", "values"]
            assert len(layer["values"]) == 32
            assert all(round(v, 6) == v for v in layer["values"])


def test_pair_line_has_both_segments_and_two_seps(outputs):
    assert [f["token"] for f in outputs[1]["features"]] == [
        "[CLS]",
        "the",
        "dog",
        "##s",
        "ran",
        "[SEP]",
        "a",
        "cat",
        "play",
        "##ed",
        "[SEP]",
    ]


def test_unknown_word_is_unk(outputs):
    assert [f["token"] for f in outputs[3]["features"]] == ["[CLS]", "[UNK]", "[SEP]"]


@pytest.mark.parametrize("line_index", range(len(LINES)))
def test_tokens_and_values_match_transformers(outputs, hf_folder, line_index):
    tokens, hidden = _reference(hf_folder, LINES[line_index])
    ours = outputs[line_index]["features"]
    assert [f["token"] for f in ours] == tokens
    # index -1 is the last encoder layer, 0 the first; hidden[0] is the embeddings.
    for j, layer_hidden in enumerate((hidden[-1], hidden[-2], hidden[1])):
        values = np.array([f["layers"][j]["values"] for f in ours])
        np.testing.assert_allclose(values, layer_hidden, atol=1e-5, rtol=0)


def test_batching_keeps_order_values_and_compiles_once(tokenizer, loaded, outputs):
    cfg, params, _ = loaded
    small = features.FeatureExtractor(cfg, params, [-1, -2, 0], max_seq_length=16, batch_size=2)
    again = list(features.extract_features(LINES, tokenizer, small))
    assert [o["linex_index"] for o in again] == [0, 1, 2, 3]
    for a, b in zip(again, outputs, strict=True):
        assert [f["token"] for f in a["features"]] == [f["token"] for f in b["features"]]
        va = np.array([[layer["values"] for layer in f["layers"]] for f in a["features"]])
        vb = np.array([[layer["values"] for layer in f["layers"]] for f in b["features"]])
        np.testing.assert_allclose(va, vb, atol=2e-6, rtol=0)
    assert small._fn._cache_size() == 1  # two batches, one compiled shape


def test_read_examples_splits_pairs_on_triple_bar():
    examples = list(features.read_examples(["a b ||| c\n", "no pair here\n", "x|||y\n"]))
    assert examples == [
        features.Example(0, "a b", "c"),
        features.Example(1, "no pair here", None),
        features.Example(2, "x|||y", None),
    ]


def test_long_inputs_are_truncated_to_max_seq_length(tokenizer):
    examples = [features.Example(0, "the cat " * 10), features.Example(1, "the cat sat on", "a dog")]
    single, pair = features.convert_examples(examples, tokenizer, max_seq_length=6)
    assert single.tokens == ["[CLS]", "the", "cat", "the", "cat", "[SEP]"]
    assert pair.tokens == ["[CLS]", "the", "cat", "[SEP]", "a", "[SEP]"]
    assert pair.segment_ids.tolist() == [0, 0, 0, 0, 1, 1]
    assert pair.input_mask.tolist() == [1] * 6


def test_truncate_pair_pops_from_the_longer():
    a, b = ["a1", "a2", "a3", "a4"], ["b1", "b2"]
    features.truncate_pair(a, b, 4)
    assert (a, b) == (["a1", "a2"], ["b1", "b2"])


def test_layer_index_out_of_range():
    with pytest.raises(
        UserError, match=r"--layers='-1,-4': the model has 3 layers, so indexes must lie in \[-3, 2\]"
    ):
        features.parse_layers("-1,-4", 3)


def test_layer_spec_not_integers():
    with pytest.raises(UserError, match="expected comma-separated integers"):
        features.parse_layers("last", 3)


def test_max_seq_length_beyond_position_embeddings(loaded):
    cfg, params, _ = loaded
    with pytest.raises(UserError, match="--max_seq_length=17 exceeds the model's max_position_embeddings=16"):
        features.FeatureExtractor(cfg, params, [-1], max_seq_length=17)


def _cli(args, stdin):
    # One device, at the tests' optimisation level: the outputs are compared
    # exactly with those computed in this process.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags()}
    return subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "extract-features", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
    )


def test_command_reads_hf_folder_directly(hf_folder, outputs):
    result = _cli(
        [f"--checkpoint={hf_folder}", "--layers=-1,-2,0", "--max_seq_length=16", "--batch_size=3"],
        "\n".join(LINES) + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == outputs


def test_vocab_and_case_come_from_flags_first_then_the_checkpoint(hf_folder, loaded):
    _, _, meta = loaded
    vocab = str(hf_folder / "vocab.txt")
    assert features.tokenizer_settings("ckpt", meta, None, None) == (vocab, True)
    assert features.tokenizer_settings("ckpt", meta, "/other/vocab.txt", False) == ("/other/vocab.txt", False)
    assert features.tokenizer_settings("ckpt", {"vocab_file": None, "lower_case": None}, vocab, None) == (
        vocab,
        True,
    )


def test_checkpoint_without_vocab_says_pass_vocab():
    with pytest.raises(UserError, match=r"^ckpt carries no vocab.txt; pass --vocab$"):
        features.tokenizer_settings("ckpt", {"vocab_file": None, "lower_case": None}, None, None)


def test_our_checkpoint_gives_the_same_features(tokenizer, loaded, outputs, tmp_path):
    cfg, params, _ = loaded
    checkpoints.save_model(tmp_path / "ours", cfg, params)
    cfg2, params2, _ = checkpoints.load_model(tmp_path / "ours")
    extractor = features.FeatureExtractor(cfg2, params2, [-1, -2, 0], max_seq_length=16, batch_size=3)
    assert list(features.extract_features(LINES, tokenizer, extractor)) == outputs


# ---- every tokenizer kind: RoBERTa (byte-level BPE) and ALBERT (SentencePiece) folders ----

FAMILY_TEXT = [
    "The cat sat on the mat, and the dog ran.",
    "A cat played with the dogs; the dogs ran on.",
    "Cats and dogs sat. The mat was red, the cat was not.",
] * 20
FAMILY_LINES = ["The cat sat on the mat.", "the dogs ran ||| a cat played", "Cats, dogs and a MAT", "zebra 9,9"]


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory):
    """{"roberta": folder, "albert": folder}: random 2-layer HF models with
    tokenizer files built here by bert_jax.data.vocab (as `build-vocab` does)."""
    from bert_jax.data import vocab

    root = tmp_path_factory.mktemp("family-features")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(FAMILY_TEXT) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    roberta = root / "roberta"
    vocab.build_byte_bpe_vocab(str(corpus), 300, str(roberta))
    n = len(json.loads((roberta / "vocab.json").read_text(encoding="utf-8")))
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = transformers.RobertaConfig(vocab_size=n, max_position_embeddings=18, type_vocab_size=1, **common)
    transformers.RobertaModel(config, add_pooling_layer=False).eval().save_pretrained(roberta)
    albert = root / "albert"
    vocab.build_sentencepiece_model(str(corpus), 100, "bpe", str(albert / "spiece"), lower_case=True)
    config = transformers.AlbertConfig(vocab_size=100, embedding_size=16, max_position_embeddings=16, **common)
    transformers.AlbertModel(config, add_pooling_layer=False).eval().save_pretrained(albert)
    return {"roberta": roberta, "albert": albert}


def _family_reference(folder, family, line):
    if family == "roberta":
        tok = transformers.RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
        model = transformers.RobertaModel.from_pretrained(folder, add_pooling_layer=False).eval()
    else:
        tok = transformers.AlbertTokenizer(str(folder / "spiece.model"))
        model = transformers.AlbertModel.from_pretrained(folder, add_pooling_layer=False).eval()
    enc = tok(*line.split(" ||| "), return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    ids = enc["input_ids"][0]
    segments = enc["token_type_ids"][0].tolist() if "token_type_ids" in enc else [0] * len(ids)
    return tok.convert_ids_to_tokens(ids), segments, hidden


@pytest.mark.parametrize("family", ["roberta", "albert"])
def test_family_folder_tokens_and_values_match_transformers(family_folders, family):
    folder = family_folders[family]
    cfg, params, meta = checkpoints.load_model(folder)
    tokenizer = features.load_tokenizer(str(folder), meta, None, None)  # the folder's own files
    assert tokenizer.kind == {"roberta": "byte_bpe", "albert": "sentencepiece"}[family]
    extractor = features.FeatureExtractor(cfg, params, [-1, 0], max_seq_length=16, batch_size=3)
    outputs = list(features.extract_features(FAMILY_LINES, tokenizer, extractor))
    examples = list(features.read_examples(FAMILY_LINES))
    converted = features.convert_examples(examples, tokenizer, 16, double_separator=family == "roberta")
    for line, ours, feature in zip(FAMILY_LINES, outputs, converted, strict=True):
        tokens, segments, hidden = _family_reference(folder, family, line)
        assert [f["token"] for f in ours["features"]] == tokens
        assert feature.segment_ids[: len(tokens)].tolist() == segments
        for j, layer_hidden in enumerate((hidden[-1], hidden[1])):
            values = np.array([f["layers"][j]["values"] for f in ours["features"]])
            np.testing.assert_allclose(values, layer_hidden[0].numpy(), atol=1e-5, rtol=0)


def test_roberta_pair_reads_s_a_double_separator_b(family_folders):
    folder = family_folders["roberta"]
    _, _, meta = checkpoints.load_model(folder)
    tokenizer = features.load_tokenizer(str(folder), meta, None, None)
    (pair,) = features.convert_examples([features.Example(0, "the cat", "a dog")], tokenizer, 12, True)
    assert pair.tokens[0] == "<s>" and pair.tokens.count("</s>") == 3
    assert pair.tokens[pair.tokens.index("</s>") + 1] == "</s>"
    assert pair.segment_ids.tolist() == [0] * 12
    assert pair.input_ids[len(pair.tokens) :].tolist() == [tokenizer.pad_id] * (12 - len(pair.tokens)) == [1] * (
        12 - len(pair.tokens)
    )


def test_command_reads_a_roberta_folder_directly(family_folders):
    folder = family_folders["roberta"]
    result = _cli([f"--checkpoint={folder}", "--layers=-1", "--max_seq_length=16", "--batch_size=2"], "a cat ran\n")
    assert result.returncode == 0, result.stderr[-2000:]
    (out,) = [json.loads(line) for line in result.stdout.splitlines()]
    tokens, _, _ = _family_reference(folder, "roberta", "a cat ran")
    assert [f["token"] for f in out["features"]] == tokens


def test_vocab_flag_takes_any_kind(family_folders, loaded):
    _, _, meta = loaded
    tokenizer = features.load_tokenizer("ckpt", meta, str(family_folders["albert"] / "spiece.model"), None)
    assert (tokenizer.kind, tokenizer.flavor, tokenizer.lower_case) == ("sentencepiece", "albert", True)
