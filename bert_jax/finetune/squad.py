"""SQuAD v1.1 / v2.0: windows over long contexts, span decoding, predictions.json.

Follows the original BERT's run_squad.py: the context is split on whitespace
into words, each word tokenized as running text has it (any tokenizer kind:
byte-level BPE's pieces keep the space before a word);
`[CLS] question [SEP] window [SEP]` windows of the context (the tokenizer's
own specials; RoBERTa's family `<s> question </s></s> window </s>`, one
segment) advance by `doc_stride` sub-tokens; each token scores
only in the window where it has the most context on both sides. A training
answer outside a window points at [CLS] (position 0). Decoding takes the
`n_best_size` best starts and ends, keeps valid spans no longer than
`max_answer_length`, and maps the best back to the original text. For v2.0 a
question gets "" when the [CLS] null score minus the best span's score
exceeds `null_score_diff_threshold`.

A training answer whose `answer_start` does not point at its text in the
context is skipped and counted (as run_squad.py does, which logs "Could not
find answer"); the count is logged.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from typing import Any

import numpy as np
from absl import logging

from bert_jax import features as bert_features
from bert_jax.errors import ConfigError, DataError
from bert_jax.finetune import files, metrics
from bert_jax.finetune.prepared import EvalSet, Prepared

PREDICTIONS_FILE = "predictions.json"


@dataclasses.dataclass(frozen=True)
class SquadTask:
    """`squad` (v1.1: every question has an answer) or `squad2` (v2.0)."""

    name: str

    @property
    def version_2(self) -> bool:
        return self.name == "squad2"


def get_task(name: str) -> SquadTask:
    return SquadTask("squad2" if name.lower() == "squad2" else "squad")


@dataclasses.dataclass
class SquadExample:
    """One question; `doc_words` is the context split on whitespace,
    `start_word`/`end_word` the answer's word span (-1 for none)."""

    qid: str
    question: str
    doc_words: list[str]
    answers: list[str]
    answer_text: str = ""
    start_word: int = -1
    end_word: int = -1
    is_impossible: bool = False


def _is_space(c: str) -> bool:
    return c in " \t\r\n" or ord(c) == 0x202F


def split_words(context: str) -> tuple[list[str], list[int]]:
    """Whitespace words of `context` and, per character, the index of its word."""
    words, char_to_word, prev_space = [], [], True
    for c in context:
        if _is_space(c):
            prev_space = True
        else:
            if prev_space:
                words.append(c)
            else:
                words[-1] += c
            prev_space = False
        char_to_word.append(len(words) - 1)
    return words, char_to_word


def read_squad(path: str | pathlib.Path, is_training: bool) -> tuple[list[SquadExample], int]:
    """Examples of a SQuAD JSON file and how many training answers were
    skipped because their text is not at `answer_start` in the context."""
    path = files.check_file(path, "pass a SQuAD JSON file")
    text = files.utf8_text(path)  # a byte that is not UTF-8: DataError naming the line
    try:
        data = json.loads(text)["data"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a SQuAD JSON file with a 'data' list ({e})") from None
    examples, skipped = [], 0
    for article in data:
        for paragraph in article["paragraphs"]:
            words, char_to_word = split_words(paragraph["context"])
            for qa in paragraph["qas"]:
                ex = _example(qa, paragraph["context"], words, char_to_word, is_training, path)
                if ex is None:
                    skipped += 1
                else:
                    examples.append(ex)
    if not examples:
        raise DataError(f"{path} holds no questions")
    return examples, skipped


def _example(qa, context, words, char_to_word, is_training, path) -> SquadExample | None:
    answers = [a["text"] for a in qa.get("answers", [])]
    impossible = bool(qa.get("is_impossible", False))
    ex = SquadExample(qa["id"], qa["question"], words, answers, is_impossible=impossible)
    if not is_training or impossible:
        return ex
    if not qa.get("answers"):
        raise DataError(f"{path}: question {qa['id']} has no answers and is not marked is_impossible")
    answer = qa["answers"][0]
    start, text = int(answer["answer_start"]), answer["text"]
    if context[start : start + len(text)] != text or not text.strip():
        logging.warning(
            "%s: question %s: answer %r is not at answer_start %d; skipped", path, qa["id"], text, start
        )
        return None
    ex.answer_text = text
    ex.start_word = char_to_word[start]
    ex.end_word = char_to_word[start + len(text) - 1]
    return ex


@dataclasses.dataclass
class Window:
    """One model input: the example index, its tokens' origin words, and for
    each context token whether this window is its best-context window."""

    example: int
    token_to_word: dict[int, int]
    max_context: dict[int, bool]
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    start: int = 0
    end: int = 0


def _improve_span(pieces, start, end, tokenizer, answer_text) -> tuple[int, int]:
    """The tightest sub-token span inside [start, end] whose text equals the
    tokenized answer (run_squad.py's _improve_answer_span). Where pieces carry
    the space before a word, the answer is tried as it follows a space first,
    then alone (an answer that starts inside a word: "1895" of "(1895)")."""
    forms = [answer_text]
    if tokenizer.space_starts_word:
        forms.insert(0, " " + answer_text)
    for target in (" ".join(p) for p in tokenizer.tokenize(forms)):
        for new_start in range(start, end + 1):
            for new_end in range(end, new_start - 1, -1):
                if " ".join(pieces[new_start : new_end + 1]) == target:
                    return new_start, new_end
    return start, end


def _max_context(spans: list[tuple[int, int]], span_index: int, position: int) -> bool:
    """Whether span `span_index` gives `position` the most context (min of
    left and right, plus a small bonus for longer spans)."""
    best_score, best = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, i
    return best == span_index


@dataclasses.dataclass(frozen=True)
class _Context:
    """One example ready for windowing: its question's word pieces (cut to
    `max_query_length`), its context's word pieces with each piece's word
    index, the `(offset, length)` piece spans its windows cover, and the
    answer's first and last piece (None when it trains on no answer)."""

    ex_index: int
    q_pieces: list[str]
    pieces: list[str]
    piece_word: list[int]
    spans: list[tuple[int, int]]
    answer: tuple[int, int] | None


def make_windows(
    examples: list[SquadExample],
    tokenizer,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    is_training: bool,
) -> list[Window]:
    """Sliding windows over every example's context."""
    specials = _Specials.of(tokenizer)
    if doc_stride <= 0:
        raise ConfigError(f"config.doc_stride={doc_stride}; must be positive")
    questions = tokenizer.tokenize([e.question for e in examples])
    windows = []
    for ex_index, (ex, q_pieces) in enumerate(zip(examples, questions, strict=True)):
        q_pieces = list(q_pieces)[:max_query_length]
        word_pieces = tokenizer.tokenize_words(ex.doc_words) if ex.doc_words else []
        pieces, piece_word, word_first = [], [], []
        for w, wp in enumerate(word_pieces):
            word_first.append(len(pieces))
            pieces.extend(wp)
            piece_word.extend([w] * len(wp))
        word_first.append(len(pieces))
        answer = None
        if is_training and not ex.is_impossible:
            tok_start = word_first[ex.start_word]
            tok_end = word_first[ex.end_word + 1] - 1
            answer = _improve_span(pieces, tok_start, tok_end, tokenizer, ex.answer_text)
        room = max_seq_length - len(q_pieces) - specials.count
        if room <= 0:
            raise ConfigError(
                f"config.max_seq_length={max_seq_length} leaves no room for context after a "
                f"{len(q_pieces)}-token question; raise it or lower config.max_query_length"
            )
        spans = _spans(len(pieces), room, doc_stride)
        context = _Context(ex_index, q_pieces, pieces, piece_word, spans, answer)
        windows.extend(_window(context, i, tokenizer, specials, max_seq_length) for i in range(len(spans)))
    return windows


def _spans(n_pieces: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
    """`(offset, length)` spans of at most `room` pieces, each `doc_stride`
    pieces after the last, until one reaches the end (at least one span)."""
    spans, offset = [], 0
    while True:
        length = min(n_pieces - offset, room)
        spans.append((offset, length))
        if offset + length >= n_pieces:
            return spans
        offset += min(length, doc_stride)


@dataclasses.dataclass(frozen=True)
class _Specials:
    """The tokenizer's [CLS] and the separator(s) after the question: one
    [SEP], or RoBERTa's family `</s></s>` with the window in segment 0."""

    cls: str
    sep: str
    middle: tuple[str, ...]
    window_segment: int

    @classmethod
    def of(cls, tokenizer) -> _Specials:
        sep = tokenizer.vocab[tokenizer.sep_id]
        double = getattr(tokenizer, "flavor", "") in bert_features.DOUBLE_SEPARATOR_FAMILIES
        return cls(tokenizer.vocab[tokenizer.cls_id], sep, (sep,) * (2 if double else 1), 0 if double else 1)

    @property
    def count(self) -> int:
        """Special tokens in a window: [CLS], the middle ones, the last [SEP]."""
        return len(self.middle) + 2


def _window(context: _Context, span_index: int, tokenizer, specials: _Specials, max_seq_length: int) -> Window:
    """`[CLS] question [SEP] span [SEP]`, padded to `max_seq_length`, for
    span `span_index` of `context`; its answer positions when the span holds
    the whole answer, else 0 ([CLS])."""
    offset, length = context.spans[span_index]
    tokens = [specials.cls, *context.q_pieces, *specials.middle]
    segments = [0] * len(tokens)
    token_to_word, max_context = {}, {}
    for i in range(length):
        token_to_word[len(tokens)] = context.piece_word[offset + i]
        max_context[len(tokens)] = _max_context(context.spans, span_index, offset + i)
        tokens.append(context.pieces[offset + i])
        segments.append(specials.window_segment)
    tokens.append(specials.sep)
    segments.append(specials.window_segment)
    ids = np.full(max_seq_length, tokenizer.pad_id, np.int32)
    ids[: len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
    mask = np.zeros(max_seq_length, np.int32)
    mask[: len(tokens)] = 1
    seg = np.zeros(max_seq_length, np.int32)
    seg[: len(segments)] = segments
    window = Window(context.ex_index, token_to_word, max_context, ids, mask, seg)
    if context.answer is not None:
        tok_start, tok_end = context.answer
        if offset <= tok_start and tok_end < offset + length:
            shift = len(context.q_pieces) + 1 + len(specials.middle) - offset
            window.start, window.end = tok_start + shift, tok_end + shift
    return window


def window_features(windows: list[Window]) -> dict[str, np.ndarray]:
    """`[n, seq]` inputs, `start_positions`/`end_positions [n]` and weights."""
    return {
        "input_ids": np.stack([w.input_ids for w in windows]),
        "input_mask": np.stack([w.input_mask for w in windows]),
        "segment_ids": np.stack([w.segment_ids for w in windows]),
        "start_positions": np.array([w.start for w in windows], np.int32),
        "end_positions": np.array([w.end for w in windows], np.int32),
        "weights": np.ones(len(windows), np.float32),
    }


# --------------------------------------------------------------------------
# Decoding


def _best_indexes(logits: np.ndarray, n: int) -> list[int]:
    return [int(i) for i in np.argsort(-logits, kind="stable")[:n]]


def decode(
    examples: list[SquadExample],
    windows: list[Window],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float]]:
    """{qid: answer text} and, for v2.0, {qid: null score - best span score}.
    `start_logits`/`end_logits` are `[len(windows), seq]`."""
    by_example = collections.defaultdict(list)
    for i, w in enumerate(windows):
        by_example[w.example].append(i)
    answers, null_odds = {}, {}
    for ex_index, ex in enumerate(examples):
        candidates, null_score = [], None
        for wi in by_example[ex_index]:
            w, s, e = windows[wi], start_logits[wi], end_logits[wi]
            score_null = float(s[0] + e[0])
            null_score = score_null if null_score is None else min(null_score, score_null)
            for start in _best_indexes(s, n_best_size):
                for end in _best_indexes(e, n_best_size):
                    if start not in w.token_to_word or end not in w.token_to_word or end < start:
                        continue
                    if not w.max_context.get(start, False) or end - start + 1 > max_answer_length:
                        continue
                    candidates.append(
                        (float(s[start] + e[end]), w.token_to_word[start], w.token_to_word[end])
                    )
        candidates.sort(key=lambda c: -c[0])
        best_text, best_score = "", None
        if candidates:
            best_score, first, last = candidates[0]
            best_text = " ".join(ex.doc_words[first : last + 1])
        if version_2:
            diff = null_score - (best_score if best_score is not None else -np.inf)
            null_odds[ex.qid] = float(diff)
            answers[ex.qid] = "" if diff > null_score_diff_threshold or best_score is None else best_text
        else:
            answers[ex.qid] = best_text
    return answers, null_odds


# --------------------------------------------------------------------------
# The trainer's interface


def _version_2(config) -> bool:
    return get_task(config.task).version_2


def _eval_set(config, tokenizer, path) -> tuple[EvalSet, list[SquadExample], list[Window]]:
    examples, _ = read_squad(path, is_training=False)
    windows = make_windows(
        examples,
        tokenizer,
        config.max_seq_length,
        config.doc_stride,
        config.max_query_length,
        is_training=False,
    )
    golds = {e.qid: e.answers for e in examples}

    def score(outputs):
        preds, _ = _decode(config, examples, windows, outputs, tokenizer)
        return metrics.squad_scores(golds, preds)

    return EvalSet(window_features(windows), score), examples, windows


def _decode(config, examples, windows, outputs, tokenizer):
    start, end = outputs
    return decode(
        examples,
        windows,
        np.asarray(start),
        np.asarray(end),
        config.n_best_size,
        config.max_answer_length,
        _version_2(config),
        config.null_score_diff_threshold,
    )


def prepare(config, tokenizer) -> Prepared:
    if not config.train_file or not config.dev_file:
        raise ConfigError("SQuAD needs config.train_file and config.dev_file (the SQuAD JSON files)")
    train, skipped = read_squad(config.train_file, is_training=True)
    if skipped:
        logging.warning("%s: skipped %d answers not found at their answer_start", config.train_file, skipped)
    if config.get("train_examples", 0):
        train = train[: config.train_examples]
    windows = make_windows(
        train, tokenizer, config.max_seq_length, config.doc_stride, config.max_query_length, is_training=True
    )
    dev, _, _ = _eval_set(config, tokenizer, config.dev_file)
    return Prepared(
        "squad2" if _version_2(config) else "squad",
        "span",
        2,
        None,
        window_features(windows),
        {"dev": dev},
        "f1",
    )


def predict_inputs(config, tokenizer, path: str) -> tuple[dict[str, np.ndarray], Any]:
    ev, examples, windows = _eval_set(config, tokenizer, path)
    return ev.features, (examples, windows, tokenizer)


def write_predictions(config, outputs, context, labels, out) -> None:
    """The official format: `{"question id": "answer text", ...}`."""
    examples, windows, tokenizer = context
    preds, _ = _decode(config, examples, windows, outputs, tokenizer)
    json.dump(preds, out, indent=2, ensure_ascii=False)
    out.write("\n")
