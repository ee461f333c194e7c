"""A Hugging Face ModernBERT folder as transformers writes it (config.json,
model.safetensors, tokenizer.json and nothing else) through bert-jax
(issue 19): its tokenizer is whatever tokenizer.json says, through the one
tokenizer interface, with transformers' `AutoTokenizer` ids; `convert`
(both ways), `extract-features` and `evaluate --checkpoint` read the folder.

The tokenizer.json is built here with `tokenizers` as ModernBERT's is made:
NFC, byte-level BPE, non-special added tokens (runs of spaces), the special
tokens [UNK] [CLS] [SEP] [PAD] [MASK] added after the vocabulary ([MASK]
stripping the space before it) and a `[CLS] $A [SEP]` template. The model is
a random tiny ModernBertForMaskedLM. Nothing is downloaded.
"""

import json
import os
import pathlib
import shutil

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from cli_cases import run_cases  # noqa: E402
from test_tokenization import _book_lines, _mixed_lines  # noqa: E402

from bert_jax import checkpoints, convert  # noqa: E402
from bert_jax.errors import DataError  # noqa: E402
from bert_jax.tokenization import TokenizerJson, load_tokenizer  # noqa: E402

BOOKS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books" / "train"
SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
SEQ, P, BATCH = 32, 5, 8  # 8: the simulated devices split the batch


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return (_book_lines(BOOKS) if BOOKS.is_dir() else []) + _mixed_lines()


def _modernbert_like_tokenizer(lines, specials=SPECIALS):
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    tok.add_tokens([AddedToken("   ", normalized=True), AddedToken("  ", normalized=True)])
    tok.add_special_tokens([AddedToken(s, lstrip=s == "[MASK]", normalized=False) for s in specials])
    if "[CLS]" in specials:
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
    return tok


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, lines):
    """(folder, ModernBertForMaskedLM): config.json, model.safetensors, tokenizer.json only."""
    tok = _modernbert_like_tokenizer(lines)
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    config = transformers.ModernBertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=SEQ, local_attention=8, global_attn_every_n_layers=3,
        pad_token_id=ids["[PAD]"], cls_token_id=ids["[CLS]"], sep_token_id=ids["[SEP]"],
        bos_token_id=ids["[CLS]"], eos_token_id=ids["[SEP]"], reference_compile=False,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = transformers.ModernBertForMaskedLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("modernbert") / "hf"
    model.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    for extra in set(os.listdir(folder)) - {"config.json", "model.safetensors", "tokenizer.json"}:
        os.remove(folder / extra)
    return folder, model


@pytest.fixture(scope="module")
def pair(hf_folder):
    """(ours, transformers' AutoTokenizer) of the folder."""
    folder, _ = hf_folder
    reference = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert type(reference).__name__ == "PreTrainedTokenizerFast"
    return load_tokenizer(str(folder)), reference


def _reference_ids(reference, texts):
    return reference(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]


# ---- the tokenizer ----


def test_ids_equal_autotokenizer_on_books_and_mixed_script_lines(pair, lines):
    ours, reference = pair
    got, expected = ours.encode(lines), _reference_ids(reference, lines)
    differing = [(line, e, g) for line, e, g in zip(lines, expected, got, strict=True) if e != g]
    assert len(lines) > 1500 and differing == []
    assert any("  " in line for line in lines)  # the added space-run tokens are exercised


def test_special_ids_are_the_tokenizer_json_s(pair, hf_folder):
    ours, reference = pair
    assert isinstance(ours, TokenizerJson) and ours.kind == "tokenizer_json"
    want = [reference.convert_tokens_to_ids(s) for s in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    assert [ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id] == want
    assert ours.vocab_size == len(reference) == hf_folder[1].config.vocab_size
    assert ours.flavor == "bert"  # [CLS] A [SEP] B [SEP]: one separator between a pair
    assert ours.vocab_file == str(hf_folder[0] / "tokenizer.json")


def test_every_token_string_maps_to_the_reference_id(pair):
    ours, reference = pair
    assert ours.convert_tokens_to_ids(ours.vocab) == reference.convert_tokens_to_ids(ours.vocab)
    assert ours.convert_ids_to_tokens(range(ours.vocab_size)) == reference.convert_ids_to_tokens(range(ours.vocab_size))


def test_text_spelling_a_special_token_is_ordinary_text(pair):
    ours, reference = pair
    text = ["a [MASK] b [CLS]"]
    assert ours.encode(text) == _reference_ids(reference, text)
    assert ours.mask_id not in ours.encode(text)[0]
    assert ours.mask_id in reference(text, add_special_tokens=False)["input_ids"][0]  # transformers' default


def test_word_starts_are_the_pieces_with_a_leading_space_mark(pair):
    ours, _ = pair
    for token in ("Ġthe", "the", "[CLS]", "[MASK]", "<|padding|>"):
        if token in ours._ids:
            assert ours.is_continuation_id[ours._ids[token]] == (token == "the"), token


def test_tf_encode_inside_tf_data_equals_encode(pair, lines):
    tf = pytest.importorskip("tensorflow")
    ours, _ = pair
    sample = lines[:50]
    ds = tf.data.Dataset.from_tensor_slices(sample).batch(16).map(ours.tf_encode)
    got = [row.tolist() for batch in ds for row in batch.numpy()]
    assert got == ours.encode(sample)


def test_tokenizer_config_names_the_roles_over_the_spellings(hf_folder, tmp_path):
    shutil.copy(hf_folder[0] / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": {"content": "<|padding|>"}}))
    tok = load_tokenizer(str(tmp_path))
    assert tok.vocab[tok.pad_id] == "<|padding|>" and tok.vocab[tok.cls_id] == "[CLS]"


def test_a_modernbert_folder_reads_its_tokenizer_json_before_other_files(hf_folder, tmp_path):
    for name in ("tokenizer.json", "config.json"):
        shutil.copy(hf_folder[0] / name, tmp_path / name)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n")
    assert load_tokenizer(str(tmp_path)).kind == "tokenizer_json"


def test_tokenizer_json_without_a_mask_token_names_the_role(lines, tmp_path):
    _modernbert_like_tokenizer(lines[:200], specials=["[UNK]", "[CLS]", "[SEP]", "[PAD]"]).save(
        str(tmp_path / "tokenizer.json")
    )
    with pytest.raises(DataError, match=r'no mask token \(\[MASK\] or <mask>\) among its tokens; name it as '
                                        r'"mask_token" in tokenizer_config.json beside it$'):
        load_tokenizer(str(tmp_path))


def test_unreadable_tokenizer_json_is_a_data_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match=r"tokenizer .*tokenizer.json: cannot load it .*pass a Hugging Face tokenizer.json$"):
        load_tokenizer(str(tmp_path / "tokenizer.json"))


def test_empty_folder_lists_tokenizer_json_among_what_it_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"holds no tokenizer: .* or a Hugging Face tokenizer.json$"):
        load_tokenizer(str(tmp_path))


# ---- the folder through convert, extract-features and evaluate ----


def test_convert_keeps_the_tokenizer_json_both_ways(hf_folder, pair, lines, tmp_path):
    folder, model = hf_folder
    summary = convert.import_checkpoint("hf", folder, tmp_path / "ours")
    assert summary["vocab_file"] == str(folder / "tokenizer.json") and summary["heads"] == ["mlm"]
    assert (tmp_path / "ours" / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    assert load_tokenizer(str(tmp_path / "ours")).encode(lines[:100]) == pair[0].encode(lines[:100])
    convert.export_checkpoint(tmp_path / "ours", tmp_path / "back")
    again = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "back"))
    assert (again.cls_token, again.sep_token, again.pad_token, again.mask_token) == ("[CLS]", "[SEP]", "[PAD]", "[MASK]")
    assert _reference_ids(again, lines[:100]) == _reference_ids(pair[1], lines[:100])
    reloaded = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "back").state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded[name]), name


def test_extract_features_reads_the_folder_and_its_conversion_like_transformers(hf_folder, tmp_path):
    folder, model = hf_folder
    convert.import_checkpoint("hf", folder, tmp_path / "ours")
    text = ["Köln 東京  the   cat", "a cat ||| двa dogs"]
    args = ["--layers=-1,0", f"--max_seq_length={SEQ}", "--batch_size=2"]
    results = run_cases("extract-features", {
        "hf": ([f"--checkpoint={folder}", *args], "\n".join(text) + "\n"),
        "ours": ([f"--checkpoint={tmp_path / 'ours'}", *args], "\n".join(text) + "\n"),
    })
    reference = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert results["hf"]["code"] == 0, results["hf"]["err"][-2000:]
    assert results["ours"]["out"] == results["hf"]["out"]
    for line, out in zip(text, results["hf"]["out"].splitlines(), strict=True):
        enc = reference(*line.split(" ||| "), return_tensors="pt", split_special_tokens=True)
        with torch.no_grad():
            hidden = model.model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
        features = json.loads(out)["features"]
        assert len(features) < SEQ  # not truncated
        assert [f["token"] for f in features] == reference.convert_ids_to_tokens(enc["input_ids"][0])
        for j, layer in enumerate((hidden[-1], hidden[1])):  # --layers=-1,0: the last and first layers
            values = np.array([f["layers"][j]["values"] for f in features])
            np.testing.assert_allclose(values, layer[0].numpy(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def shards(hf_folder, tmp_path_factory, lines):
    """Held-out MLM shards made with the folder's tokenizer.json (create-data)."""
    from bert_jax.data import create_data

    root = tmp_path_factory.mktemp("modernbert-shards")
    (root / "books.txt").write_text("\n".join(x for x in lines[:400] if x.strip()) + "\n", encoding="utf-8")
    options = create_data.CreateDataOptions(
        vocab_file=str(hf_folder[0] / "tokenizer.json"), do_lower_case=False, max_seq_length=SEQ,
        max_predictions_per_seq=P, mode="mlm_packed", dupe_factor=1, num_workers=1, num_shards=1, progress=False,
    )
    create_data.create_pretraining_data(options, str(root / "books.txt"), str(root / "shards"))
    return str(root / "shards")


def test_evaluate_checkpoint_of_the_folder_equals_transformers_mlm_loss(hf_folder, shards):
    from bert_jax.config import pretrain_config
    from bert_jax.data import records
    from bert_jax.train import evaluate

    folder, model = hf_folder
    metadata = records.read_metadata(shards)
    rows = [r for path in metadata["shard_paths"] for r in records.iter_records(path)]
    parsed = records.parse_records(rows, metadata["features"])
    keys = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
    batches = [{k: np.asarray(parsed[k][s : s + BATCH]) for k in keys} for s in (0, BATCH)]
    for b in batches:
        b["next_sentence_labels"] = np.zeros(BATCH, np.int32)
    config = pretrain_config()
    config.data.eval_files, config.data.mode = shards, "mlm_packed"
    config.data.max_seq_length, config.data.max_predictions_per_seq = SEQ, P
    config.batch_size, config.eval_steps = BATCH, 2
    result = evaluate.evaluate_checkpoint(config, str(folder), source_factory=lambda *a: iter(batches))
    ce_sum = weight_sum = 0.0
    for b in batches:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(b["input_ids"]).long(),
                           attention_mask=torch.tensor(b["input_mask"]).long()).logits
        at = torch.take_along_dim(logits, torch.tensor(b["masked_lm_positions"]).long()[..., None], dim=1)
        ce = torch.nn.functional.cross_entropy(at.flatten(0, 1), torch.tensor(b["masked_lm_ids"]).long().flatten(),
                                               reduction="none").numpy()
        ce_sum += float((ce * b["masked_lm_weights"].reshape(-1)).sum())
        weight_sum += float(b["masked_lm_weights"].sum())
    assert result["masked_tokens"] == weight_sum > 0
    np.testing.assert_allclose(result["mlm_loss"], ce_sum / weight_sum, rtol=1e-4)
    # And through the real input pipeline, which checks the shards' tokenizer hash against the folder's.
    assert np.isfinite(evaluate.evaluate_checkpoint(config, str(folder))["mlm_loss"])


# ---- fine-tuning: GLUE classification with ModernBERT's head ----

POSITIVE = ["the film is good", "a great film", "very fun", "good fun .", "the film is great", "great"]
NEGATIVE = ["the film is bad", "an awful film", "very dull", "not good .", "the film is awful", "dull"]


def test_finetune_glue_on_the_converted_folder_trains_modernbert_s_head(hf_folder, tmp_path):
    from train_utils import tiny_finetune_config

    from bert_jax import features
    from bert_jax.finetune import config as ft_config
    from bert_jax.finetune import trainer
    from bert_jax.model import BertForSequenceClassification

    folder, _ = hf_folder
    convert.import_checkpoint("hf", folder, tmp_path / "ours")
    sst = tmp_path / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = [f"{t} \t1" for t in POSITIVE] + [f"{t} \t0" for t in NEGATIVE]
    (sst / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (sst / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[::2]) + "\n")
    config = tiny_finetune_config(ft_config.finetune_config("sst2"), tmp_path / "ours", tmp_path / "glue",
                                  total_steps=2, max_seq_length=SEQ, pooling="mean")
    results = trainer.run(config, tmp_path / "work")
    assert set(results["dev"]) == {"accuracy"}
    cfg, params, meta = checkpoints.load_model(tmp_path / "work" / "best")
    assert (cfg.pooler, cfg.pooling, cfg.num_labels) == ("head", "mean", 2)
    assert sorted(params["bert"]["pooler"]) == ["LayerNorm", "dense"] and params["classifier"]["kernel"].shape == (32, 2)
    assert meta["vocab_file"].endswith("tokenizer.json")
    # The fine-tuned classifier is transformers' ModernBertForSequenceClassification, logits and all.
    convert.export_checkpoint(tmp_path / "work" / "best", tmp_path / "hf-classifier")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf-classifier").eval()
    assert model.config.classifier_pooling == "mean"
    tokenizer = load_tokenizer(str(tmp_path / "work" / "best"))
    examples = [features.Example(i, t, None) for i, t in enumerate(["a great film", "the film is not good ."])]
    batch = features.convert_examples(examples, tokenizer, SEQ)
    ids, mask = (np.stack([getattr(f, k) for f in batch]) for k in ("input_ids", "input_mask"))
    ours = BertForSequenceClassification(cfg).apply({"params": params}, ids, mask, np.zeros_like(ids))
    with torch.no_grad():
        reference = model(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask).long()).logits
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), atol=1e-4, rtol=0)


def test_a_modernbert_with_a_byte_level_bpe_vocab_exports_a_tokenizer_transformers_loads(hf_folder, lines, tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines[:300], vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(tmp_path))
    cfg, params, _ = checkpoints.load_model(hf_folder[0])
    convert.export_hf(params, cfg, tmp_path / "out", vocab_file=str(tmp_path / "vocab.json"))
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert type(reference).__name__ == "RobertaTokenizerFast"
    assert _reference_ids(reference, lines[:100]) == load_tokenizer(str(tmp_path / "out")).encode(lines[:100])


# ---- fine-tuning: SQuAD and NER on the folder's byte-level BPE ----

def _plain(line: str) -> str:
    return " ".join(line.split())  # SQuAD and CoNLL words are whitespace-separated


def test_squad_windows_equal_transformers_pair_encoding(pair, lines):
    """`[CLS] question [SEP] context [SEP]` as the folder's template makes it from
    the two texts: the context's word-by-word pieces are the running text's."""
    from bert_jax.finetune import squad

    ours, reference = pair
    texts = [_plain(t) for t in lines if t.split()][:40]
    for question, context in zip(texts[1::2], texts[::2], strict=False):
        words, _ = squad.split_words(context)
        example = squad.SquadExample("q", question, words, [])
        (window,) = squad.make_windows([example], ours, 1024, 128, 512, is_training=False)
        want = reference(question, context, split_special_tokens=True)["input_ids"]
        assert window.input_ids[: len(want)].tolist() == want
        assert window.input_mask.sum() == len(want)


def test_ner_rows_equal_transformers_encoding_of_the_sentence(pair, lines):
    from bert_jax.finetune import ner

    ours, reference = pair
    sentences = [ner.Sentence(_plain(t).split(), ["O"] * len(t.split()), "f") for t in lines if t.split()][:40]
    feats = ner.encode(sentences, ours, 1024, ["O"])
    for row, s in enumerate(sentences):
        want = reference(" ".join(s.words), split_special_tokens=True)["input_ids"]
        assert feats["input_ids"][row, : len(want)].tolist() == want
        assert (feats["first"][row] >= 0).sum() == len(s.words)


def test_finetune_squad_and_ner_on_the_converted_folder_train_and_predict(hf_folder, tmp_path):
    from train_utils import tiny_finetune_config

    from bert_jax.finetune import config as ft_config
    from bert_jax.finetune import trainer

    folder, _ = hf_folder
    convert.import_checkpoint("hf", folder, tmp_path / "ours")
    context = "the film is good and the book is bad ."
    qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for i, (q, a) in enumerate([("what is good ?", "the film"), ("what is bad ?", "the book")] * 4)]
    squad_file = tmp_path / "squad.json"
    squad_file.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}))
    config = tiny_finetune_config(ft_config.finetune_config("squad"), tmp_path / "ours", tmp_path,
                                  train_file=str(squad_file), dev_file=str(squad_file), total_steps=2,
                                  max_seq_length=SEQ, max_query_length=8, doc_stride=8, max_answer_length=5,
                                  n_best_size=5, null_score_diff_threshold=0.0)
    results = trainer.run(config, tmp_path / "squad")
    assert set(results["dev"]) == {"exact_match", "f1"}
    config.update(mode="predict", predict_file=str(squad_file), init_checkpoint="")
    predictions = json.loads(pathlib.Path(trainer.run(config, tmp_path / "squad")).read_text())
    assert sorted(predictions) == sorted(q["id"] for q in qas)
    assert all(p == "" or p in context for p in predictions.values())

    conll = tmp_path / "conll"
    conll.mkdir()
    rows = ["the O", "film B-X", "is O", "good O", "", "a O", "book B-X", ". O"]
    (conll / "train.txt").write_text("\n".join(rows) + "\n")
    (conll / "dev.txt").write_text((conll / "train.txt").read_text())
    config = tiny_finetune_config(ft_config.finetune_config("ner"), tmp_path / "ours", conll,
                                  train_file="train.txt", dev_file="dev.txt", total_steps=2, max_seq_length=SEQ)
    results = trainer.run(config, tmp_path / "ner")
    assert set(results["dev"]) >= {"f1"}
    config.update(mode="predict", predict_file=str(conll / "dev.txt"), init_checkpoint="")
    lines = pathlib.Path(trainer.run(config, tmp_path / "ner")).read_text().splitlines()
    assert [line.split()[0] for line in lines if line] == ["the", "film", "is", "good", "a", "book", "."]

