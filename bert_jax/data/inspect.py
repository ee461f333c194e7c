"""Preflight reports on a corpus, on created shards, or on a finished create-data run.

A report is a JSON-able dict:

    {"source": str, "kind": "corpus" | "shards" | "created",
     "counts": {...},                      # documents, sentences, instances, tokens, skipped...
     "vocab": {"size", "sha256", "cased", "do_lower_case", "model_vocab_size"},
     "unk": {"tokens", "unk_tokens", "rate",
             "by_script": {script: {"words", "unk_words", "rate", "tokens", "tokens_per_word"}}},
     "histograms": {name: {"edges": [...], "counts": [...]}},   # counts[i]: edges[i] <= x < edges[i+1]
     "problems": [str], "warnings": [str]}

`problems` are settings that will break or silently spoil training (a vocab
larger than the model's embedding, shards from another vocab); `warnings`
deserve a look (a cased vocab fed lowercased text, a high [UNK] rate).
Scripts are the first word of the Unicode name of a word's first letter
(LATIN, CYRILLIC, CJK, ...), or DIGIT / PUNCTUATION / SYMBOL / OTHER.

Words per script (corpus reports), for any tokenizer kind: BERT's basic split
(whitespace; each punctuation mark and CJK ideograph a word of its own; Thai
and other unspaced scripts stay one word per run). WordPiece splits and
tokenizes its own (normalized) words, so its figures are exactly its
tokenization. SentencePiece and byte-level BPE tokenize each word on its own,
as after a space (Hugging Face's `is_split_into_words` convention), so a
word's figure may count a word-start piece that running text would not need
(punctuation, CJK); the overall `tokens`/`unk_tokens` and the sentence
histogram come from tokenizing whole sentences.
"""

from __future__ import annotations

import collections
import functools
import os
import unicodedata

import numpy as np

from bert_jax.data import corpus, records
from bert_jax.errors import DataError

UNK_WARN_RATE = 0.01
_BATCH = 1024


def histogram(values: np.ndarray, edges: list[int]) -> dict:
    """{"edges", "counts"}: how many values fall in [edges[i], edges[i+1]); the last bin is open."""
    bins = np.searchsorted(np.asarray(edges), np.asarray(values), side="right") - 1
    counts = np.bincount(np.clip(bins, 0, len(edges) - 1), minlength=len(edges))
    return {"edges": list(edges), "counts": counts.tolist()}


def length_edges(max_length: int, bins: int = 8) -> list[int]:
    """About `bins` equal-width edges covering 0..max_length (the last edge is max_length + 1)."""
    step = max(1, -(-max_length // bins))
    return list(range(0, max_length, step)) + [max_length + 1]


@functools.lru_cache(maxsize=1 << 16)
def script_of(word: str) -> str:
    """Unicode script-ish class of a word: the first letter's name prefix, or DIGIT/PUNCTUATION/SYMBOL/OTHER."""
    for ch in word:
        category = unicodedata.category(ch)
        if category[0] == "L":
            name = unicodedata.name(ch, "")
            return name.split(" ")[0] if name else "OTHER"
    first = unicodedata.category(word[0])[0] if word else "C"
    return {"N": "DIGIT", "P": "PUNCTUATION", "S": "SYMBOL"}.get(first, "OTHER")


def vocab_facts(tokens: list[str]) -> dict:
    """Whether a vocab is cased (has capitals) and keeps accents (has combining marks after NFD)."""
    words = [t.removeprefix("##") for t in tokens if not (t.startswith("[") and t.endswith("]"))]
    capitals = [w for w in words if any(ch.isupper() for ch in w)]
    accented = [
        w for w in words if any(unicodedata.category(c) == "Mn" for c in unicodedata.normalize("NFD", w))
    ]
    return {"cased": len(capitals) > 0.01 * max(1, len(words)), "accents": bool(accented), "examples": capitals[:3]}


def vocab_checks(tokenizer, do_lower_case: bool, model_vocab_size: int | None) -> tuple[dict, list, list]:
    """(vocab section, problems, warnings) for a tokenizer against the text casing and a model size."""
    facts = vocab_facts(tokenizer.vocab)
    section = {
        "file": tokenizer.vocab_file,
        "size": tokenizer.vocab_size,
        "sha256": tokenizer.vocab_sha256,
        "cased": facts["cased"],
        "do_lower_case": do_lower_case,
        "model_vocab_size": model_vocab_size,
    }
    problems, warnings = [], []
    if model_vocab_size is not None and model_vocab_size != tokenizer.vocab_size:
        effect = (
            "ids past the model's embedding table would be out of range"
            if tokenizer.vocab_size > model_vocab_size
            else "the model has embedding rows no token uses"
        )
        problems.append(
            f"VOCAB SIZE MISMATCH: {tokenizer.vocab_file} has {tokenizer.vocab_size} tokens but the model's "
            f"vocab_size is {model_vocab_size} ({effect}); set model.vocab_size={tokenizer.vocab_size}"
        )
    if facts["cased"] and do_lower_case:
        warnings.append(
            f"cased vocab (e.g. {', '.join(facts['examples'])}) but do_lower_case=True lowercases the text: "
            "its capitalized pieces are never used; pass --nodo_lower_case for a cased model"
        )
    if not facts["cased"] and not do_lower_case:
        problems.append(
            "uncased vocab but do_lower_case=False: capitals and accents reach an uncased vocab and become "
            "[UNK] or rare pieces; pass --do_lower_case"
        )
    return section, problems, warnings


def _unk_section(tokens: int, unk_tokens: int, by_script: dict | None = None) -> tuple[dict, list]:
    """The `unk` section and its warnings; `by_script` maps a script to its
    counts {"words", "unk_words", "tokens"}, most words first."""
    rate = unk_tokens / tokens if tokens else 0.0
    section = {"tokens": tokens, "unk_tokens": unk_tokens, "rate": rate}
    warnings = []
    if rate > UNK_WARN_RATE:
        warnings.append(f"[UNK] rate {rate:.2%} is above {UNK_WARN_RATE:.0%}; the vocab does not fit this text")
    if by_script is not None:
        section["by_script"] = {
            script: {
                "words": c["words"],
                "unk_words": c["unk_words"],
                "rate": c["unk_words"] / c["words"] if c["words"] else 0.0,
                "tokens": c["tokens"],
                "tokens_per_word": c["tokens"] / c["words"] if c["words"] else 0.0,
            }
            for script, c in sorted(by_script.items(), key=lambda item: -item[1]["words"])
        }
        bad = [(s, c) for s, c in section["by_script"].items() if c["rate"] > UNK_WARN_RATE]
        if bad:
            warnings.append(
                f"scripts with more than {UNK_WARN_RATE:.0%} [UNK] words: "
                + ", ".join(f"{s} {c['rate']:.2%} of {c['words']} words" for s, c in bad)
                + "; the vocab serves them badly"
            )
    return section, warnings


def _wordpiece_words(tokenizer, texts):
    """WordPiece's own words: (words bytes [w], pieces per word [w], word has
    [UNK] [w], pieces per text [n], [UNK] pieces) for tf.string texts [n]."""
    import tensorflow as tf

    words = tokenizer.tf_split_words(texts).flat_values.numpy()
    pieces = tokenizer.tf_encode_words(texts)
    word_pieces = pieces.merge_dims(0, 1)
    is_unk = tf.reduce_any(tf.equal(word_pieces, tokenizer.unk_id), axis=1).numpy()
    unk_tokens = int(tf.reduce_sum(tf.cast(tf.equal(word_pieces.flat_values, tokenizer.unk_id), tf.int64)))
    per_text = pieces.merge_dims(1, 2).row_lengths().numpy()
    return words, word_pieces.row_lengths().numpy(), is_unk, per_text, unk_tokens


# Byte-level BPE marks a word start by a leading space, which a word tokenized
# alone lacks; SentencePiece adds its own ("add_dummy_prefix").
_WORD_PREFIX = {"byte_bpe": b" "}


def _basic_words(tokenizer, texts):
    """As `_wordpiece_words` for any tokenizer: BERT's basic split (no case
    folding) by tensorflow-text, each word encoded on its own."""
    # tensorflow-text's BasicTokenizer (what its BertTokenizer splits words
    # with) is not exported at the package top level.
    from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

    words = BasicTokenizer(lower_case=False).tokenize(texts).flat_values.numpy()
    prefix = _WORD_PREFIX.get(tokenizer.kind, b"")
    ids, splits = tokenizer.encode_flat([prefix + w for w in words.tolist()])
    per_word = np.diff(splits)
    word_of_piece = np.repeat(np.arange(len(words)), per_word)
    is_unk = np.bincount(word_of_piece[ids == tokenizer.unk_id], minlength=len(words)) > 0
    text_ids, text_splits = tokenizer.encode_flat(texts.numpy().tolist())
    return words, per_word, is_unk, np.diff(text_splits), int(np.count_nonzero(text_ids == tokenizer.unk_id))


def inspect_corpus(
    spec: str,
    tokenizer,
    *,
    do_lower_case: bool,
    model_vocab_size: int | None = None,
    max_documents: int | None = None,
    input_format: str = "auto",
    max_seq_length: int = 128,
) -> dict:
    """Report on (the first `max_documents` documents of) a corpus through `tokenizer`."""
    import tensorflow as tf

    stats = corpus.CorpusStats()
    by_script: dict = collections.defaultdict(lambda: {"words": 0, "unk_words": 0, "tokens": 0})
    sentence_lengths, document_sentences = [], []
    tokens = unk_tokens = 0
    pending: list[str] = []
    split_words = _wordpiece_words if tokenizer.kind == "wordpiece" else _basic_words

    def flush() -> None:
        nonlocal tokens, unk_tokens
        if not pending:
            return
        words, per_word, is_unk, per_sentence, unk = split_words(tokenizer, tf.constant(pending, tf.string))
        sentence_lengths.extend(per_sentence.tolist())
        tokens += int(per_sentence.sum())
        unk_tokens += unk
        for word, n, word_unk in zip(words.tolist(), per_word.tolist(), is_unk.tolist(), strict=True):
            counts = by_script[script_of(word.decode("utf-8", errors="replace"))]
            counts["words"] += 1
            counts["unk_words"] += word_unk
            counts["tokens"] += n
        pending.clear()

    for i, doc in enumerate(corpus.iter_documents(spec, format=input_format, stats=stats)):
        if max_documents is not None and i >= max_documents:
            break
        document_sentences.append(len(doc.sentences))
        pending.extend(doc.sentences)
        if len(pending) >= _BATCH:
            flush()
    flush()
    vocab, problems, warnings = vocab_checks(tokenizer, do_lower_case, model_vocab_size)
    unk, unk_warnings = _unk_section(tokens, unk_tokens, dict(by_script))
    return {
        "source": spec,
        "kind": "corpus",
        "counts": {**stats.as_dict(), "tokens": tokens},
        "vocab": vocab,
        "unk": unk,
        "histograms": {
            "sentence_tokens": histogram(np.array(sentence_lengths, np.int64), length_edges(max_seq_length)),
            "document_sentences": histogram(np.array(document_sentences, np.int64), [0, 1, 2, 4, 8, 16, 32, 64, 128]),
        },
        "problems": problems,
        "warnings": warnings + unk_warnings,
    }


def _record_features(path: str) -> dict[str, dict]:
    """Features of a shard without metadata: read off its first record."""
    import tensorflow as tf

    for record in records.iter_records(path):
        example = tf.train.Example.FromString(record)
        features = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value
            features[name] = {"dtype": "float32" if kind == "float_list" else "int64", "length": len(values)}
        return features
    return {}


def inspect_shards(
    pattern: str,
    tokenizer=None,
    *,
    model_vocab_size: int | None = None,
    max_records: int | None = None,
) -> dict:
    """Report on created shards (a directory, glob or comma-separated files); DataError on a corrupt record."""
    metadata = None
    try:
        metadata = records.read_metadata(pattern)
    except DataError:
        metadata = None
    if os.path.isdir(pattern) and metadata is not None:
        paths = metadata["shard_paths"]
    else:
        paths = corpus.expand_globs(pattern)
        paths = [p for p in paths if not p.endswith(records.METADATA_FILE) and records.TEMP_MARK not in p]
    if not paths:
        raise DataError(f"{pattern}: no shard files; pass a create-data output directory or a shard glob")
    features = metadata["features"] if metadata else _record_features(paths[0])
    if "input_ids" not in features:
        raise DataError(f"{paths[0]}: no input_ids feature; these are not pre-training shards")
    problems, warnings = [], []
    vocab_section = {}
    if tokenizer is not None:
        vocab_section, problems, warnings = vocab_checks(
            tokenizer, metadata["vocab"]["do_lower_case"] if metadata else True, model_vocab_size
        )
    if metadata is not None:
        problems += _metadata_problems(metadata, tokenizer, model_vocab_size)
    size = tokenizer.vocab_size if tokenizer is not None else (metadata or {}).get("vocab", {}).get("size")
    unk_id = tokenizer.unk_id if tokenizer is not None else None
    lengths, masked, labels, max_id = [], [], [], -1
    per_shard, tokens, unk_tokens, seen = {}, 0, 0, 0
    for path in paths:
        count = 0
        batch: list[bytes] = []
        for record in records.iter_records(path):
            batch.append(record)
            count += 1
            if len(batch) == _BATCH:
                tokens, unk_tokens, max_id = _tally(batch, features, unk_id, lengths, masked, labels, tokens, unk_tokens, max_id)
                batch = []
            if max_records is not None and seen + count >= max_records:
                break
        if batch:
            tokens, unk_tokens, max_id = _tally(batch, features, unk_id, lengths, masked, labels, tokens, unk_tokens, max_id)
        per_shard[path] = count
        seen += count
        if max_records is not None and seen >= max_records:
            break
    if size is not None and max_id >= size:
        problems.append(f"token id {max_id} is outside the vocab of {size} tokens; the shards need another vocab")
    seq = features["input_ids"]["length"]
    unk, unk_warnings = _unk_section(tokens, unk_tokens) if unk_id is not None else ({}, [])
    labels_arr = np.array(labels, np.int64)
    report = {
        "source": pattern,
        "kind": "shards",
        "counts": {
            "instances": int(len(lengths)),
            "shards": per_shard,
            "next_sentence_label_1": int(labels_arr.sum()),
            "masked_positions": int(np.sum(masked)) if masked else 0,
            "max_token_id": int(max_id),
        },
        "vocab": vocab_section or ({"size": size} if size else {}),
        "unk": unk,
        "histograms": {"instance_length": histogram(np.array(lengths, np.int64), length_edges(seq))},
        "problems": problems,
        "warnings": warnings + unk_warnings,
    }
    if metadata is not None:
        report["settings"] = metadata["settings"]
    return report


def _tally(batch, features, unk_id, lengths, masked, labels, tokens, unk_tokens, max_id):
    parsed = records.parse_records(batch, features)
    mask = parsed["input_mask"].astype(bool)
    lengths.extend(mask.sum(axis=1).tolist())
    if "masked_lm_weights" in parsed:
        masked.extend(parsed["masked_lm_weights"].sum(axis=1).astype(np.int64).tolist())
    if "next_sentence_labels" in parsed:
        labels.extend(parsed["next_sentence_labels"][:, 0].tolist())
    ids = parsed["input_ids"][mask]
    max_id = max(max_id, int(ids.max()) if ids.size else -1)
    if "masked_lm_ids" in parsed:
        valid = parsed["masked_lm_weights"] > 0
        max_id = max(max_id, int(parsed["masked_lm_ids"][valid].max()) if valid.any() else -1)
    tokens += int(ids.size)
    if unk_id is not None:
        unk_tokens += int(np.count_nonzero(ids == unk_id))
    return tokens, unk_tokens, max_id


def _metadata_problems(metadata: dict, tokenizer, model_vocab_size: int | None) -> list[str]:
    problems = []
    where = metadata.get("path", records.METADATA_FILE)
    if tokenizer is not None and metadata["vocab"]["sha256"] != tokenizer.vocab_sha256:
        problems.append(
            f"VOCAB MISMATCH: {where} was made with vocab sha256 {metadata['vocab']['sha256'][:12]}..., "
            f"{tokenizer.vocab_file} is {tokenizer.vocab_sha256[:12]}...; re-create the data or use that vocab"
        )
    if model_vocab_size is not None and metadata["vocab"]["size"] != model_vocab_size:
        problems.append(
            f"VOCAB SIZE MISMATCH: {where} vocab.size is {metadata['vocab']['size']} but the model's "
            f"vocab_size is {model_vocab_size}"
        )
    return problems


def created_data_report(summary: dict) -> dict:
    """The report of a finished `create_pretraining_data` run (from its returned metadata)."""
    counts = summary["counts"]
    seq = summary["settings"]["max_seq_length"]
    lengths = np.repeat(
        np.array([int(k) for k in counts["instance_lengths"]], np.int64),
        np.array(list(counts["instance_lengths"].values()), np.int64),
    )
    unk, warnings = _unk_section(counts["tokens"], counts["unk_tokens"])
    report = {
        "source": summary["input"],
        "kind": "created",
        "counts": {k: v for k, v in counts.items() if k != "instance_lengths"},
        "vocab": summary["vocab"],
        "unk": unk,
        "histograms": {"instance_length": histogram(lengths, length_edges(seq))},
        "problems": [],
        "warnings": warnings,
        "shards": summary["shards"],
    }
    if "instances_per_s" in summary:
        report["timing"] = {"elapsed_s": summary["elapsed_s"], "instances_per_s": summary["instances_per_s"]}
    return report


def format_report(report: dict) -> str:
    """Human-readable text of a report."""
    lines = [f"{report['kind']}: {report['source']}"]
    for problem in report.get("problems", []):
        lines.append(f"!! PROBLEM: {problem}")
    for warning in report.get("warnings", []):
        lines.append(f"!  warning: {warning}")
    counts = report.get("counts", {})
    for key, value in counts.items():
        if isinstance(value, dict):
            if value:
                lines.append(f"  {key}:")
                lines.extend(f"    {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"  {key}: {value}")
    vocab = report.get("vocab") or {}
    if vocab:
        lines.append("  vocab: " + ", ".join(f"{k}={v}" for k, v in vocab.items() if v is not None))
    unk = report.get("unk") or {}
    if unk:
        lines.append(f"  [UNK]: {unk['unk_tokens']} of {unk['tokens']} tokens ({unk['rate']:.3%})")
        if unk.get("by_script"):
            lines.append(f"    {'script':<14} {'words':>9} {'[UNK] words':>11} {'[UNK] rate':>10} {'tokens/word':>11}")
        for script, c in unk.get("by_script", {}).items():
            lines.append(
                f"    {script:<14} {c['words']:>9} {c['unk_words']:>11} {c['rate']:>10.2%} {c['tokens_per_word']:>11.2f}"
            )
    for name, hist in report.get("histograms", {}).items():
        lines.append(f"  {name}:")
        total = max(1, sum(hist["counts"]))
        edges = hist["edges"]
        for i, count in enumerate(hist["counts"]):
            if i + 1 == len(edges) and not count:
                continue  # the open overflow bin, empty
            upper = f"{edges[i + 1]})" if i + 1 < len(edges) else "...)"
            bar = "#" * round(40 * count / total)
            lines.append(f"    [{edges[i]:>5}, {upper:<6} {count:>9} {bar}")
    if "timing" in report:
        t = report["timing"]
        lines.append(f"  time: {t['elapsed_s']:.1f} s, {t['instances_per_s']:.0f} instances/s")
    return "\n".join(lines)
