"""Per-token hidden states as JSON lines: the original BERT's `extract_features.py`.

One input line is `text` or `text_a ||| text_b`; its output object is
`{"linex_index": i, "features": [{"token": "[CLS]", "layers": [{"index": -1,
"values": [...]}, ...]}, ...]}` over every token including [CLS] and [SEP],
values rounded to 6 decimals. Layer index -1 is the last encoder layer's
output, 0 the first's (the embeddings are not a layer), as in the original.

Batches are padded to one fixed shape `[batch_size, max_seq_length]`, so the
jitted encoder compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax import checkpoints
from bert_jax.errors import UserError
from bert_jax.model import BertModel, ModelConfig

_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


class Tokenizer(Protocol):
    """What extraction needs of `bert_jax.tokenization.WordPieceTokenizer`."""

    cls_id: int
    sep_id: int
    pad_id: int

    def tokenize(self, texts: list[str]) -> list[list[str]]: ...

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class Example:
    """One input line: `text_b` is None unless the line had ` ||| `."""

    unique_id: int
    text_a: str
    text_b: str | None = None


@dataclasses.dataclass(frozen=True)
class Features:
    """One example's tokens and its model inputs, each `[max_seq_length]` int32."""

    unique_id: int
    tokens: list[str]
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray


def read_examples(lines: Iterable[str]) -> Iterator[Example]:
    """Lines (trailing whitespace stripped, as the original) -> Examples numbered from 0."""
    for unique_id, line in enumerate(lines):
        line = line.strip()
        match = _PAIR.match(line)
        if match:
            yield Example(unique_id, match.group(1), match.group(2))
        else:
            yield Example(unique_id, line)


def truncate_pair(tokens_a: list[str], tokens_b: list[str], max_length: int) -> None:
    """Pops from the longer list until both fit in `max_length` (the original's rule)."""
    while len(tokens_a) + len(tokens_b) > max_length:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def convert_examples(
    examples: Sequence[Example], tokenizer: Tokenizer, max_seq_length: int
) -> list[Features]:
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated and zero-padded to
    `max_seq_length`; segment 0 for a (with [CLS] and its [SEP]), 1 for b."""
    pieces_a = tokenizer.tokenize([e.text_a for e in examples])
    pairs = [e.text_b for e in examples if e.text_b is not None]
    pieces_b = iter(tokenizer.tokenize(pairs) if pairs else [])
    features = []
    for example, tokens_a in zip(examples, pieces_a, strict=True):
        tokens_a = list(tokens_a)
        tokens_b = list(next(pieces_b)) if example.text_b is not None else None
        if tokens_b is None:
            tokens_a = tokens_a[: max_seq_length - 2]
        else:
            truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
        ids = [tokenizer.cls_id] + tokenizer.convert_tokens_to_ids(tokens_a) + [tokenizer.sep_id]
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
        segments = [0] * len(ids)
        if tokens_b is not None:
            ids += tokenizer.convert_tokens_to_ids(tokens_b) + [tokenizer.sep_id]
            tokens += tokens_b + ["[SEP]"]
            segments += [1] * (len(tokens_b) + 1)
        features.append(
            Features(example.unique_id, tokens, *_padded(ids, segments, max_seq_length, tokenizer.pad_id))
        )
    return features


def _padded(ids: list[int], segments: list[int], length: int, pad_id: int) -> tuple[np.ndarray, ...]:
    n = len(ids)
    input_ids = np.full([length], pad_id, np.int32)
    input_ids[:n] = ids
    input_mask = np.zeros([length], np.int32)
    input_mask[:n] = 1
    segment_ids = np.zeros([length], np.int32)
    segment_ids[:n] = segments
    return input_ids, input_mask, segment_ids


def tokenizer_settings(
    checkpoint: str, meta: dict, vocab: str | None, lower_case: bool | None
) -> tuple[str, bool]:
    """(vocab file, lower_case): the flags where given, else the checkpoint's
    own (`load_model`'s meta), else lower-casing as the original's default."""
    vocab = vocab or meta.get("vocab_file")
    if not vocab:
        raise UserError(f"{checkpoint} carries no vocab.txt; pass --vocab")
    if lower_case is None:
        lower_case = meta.get("lower_case")
    return vocab, True if lower_case is None else bool(lower_case)


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """`"-1,-2"` -> [-1, -2], each in [-num_layers, num_layers)."""
    try:
        layers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--layers={spec!r}: expected comma-separated integers like -1,-2,-3,-4") from None
    bad = [i for i in layers if not -num_layers <= i < num_layers]
    if not layers or bad:
        raise UserError(
            f"--layers={spec!r}: the model has {num_layers} layers, so indexes must lie in "
            f"[{-num_layers}, {num_layers - 1}]"
        )
    return layers


def _selected_layers(model: BertModel, layers: tuple[int, ...], params, input_ids, input_mask, segment_ids):
    """`[len(layers), batch, seq, hidden]` float32: the chosen encoder layers' outputs."""
    out = model.apply({"params": params}, input_ids, input_mask, segment_ids, return_all_hidden=True)
    encoder_outputs = out["hidden_states"][1:]  # [0] is the embeddings, not a layer
    return jnp.stack([encoder_outputs[i] for i in layers]).astype(jnp.float32)


class FeatureExtractor:
    """A model checkpoint's chosen layers, jitted for `[batch_size, max_seq_length]`."""

    def __init__(
        self,
        cfg: ModelConfig,
        params: checkpoints.Params,
        layers: Sequence[int],
        max_seq_length: int = 128,
        batch_size: int = 32,
    ):
        if max_seq_length > cfg.max_position_embeddings:
            raise UserError(
                f"--max_seq_length={max_seq_length} exceeds the model's max_position_embeddings="
                f"{cfg.max_position_embeddings}; pass a smaller --max_seq_length"
            )
        if max_seq_length < 3 or batch_size < 1:
            raise UserError(
                f"--max_seq_length={max_seq_length} must be >= 3 and --batch_size={batch_size} >= 1"
            )
        # Features are read in full precision whatever the training dtype was.
        cfg = cfg.replace(dtype="float32")
        self.cfg, self.layers = cfg, tuple(layers)
        self.max_seq_length, self.batch_size = max_seq_length, batch_size
        bert = checkpoints.with_layer_layout(params, cfg)["bert"]
        self._params = jax.device_put({k: v for k, v in bert.items() if k != "pooler"})
        model = BertModel(cfg, add_pooler=False)
        self._fn = jax.jit(functools.partial(_selected_layers, model, self.layers))

    def __call__(self, features: Sequence[Features]) -> np.ndarray:
        """`[len(layers), len(features), max_seq_length, hidden]` float32 NumPy."""
        if len(features) > self.batch_size:
            raise ValueError(f"{len(features)} features exceed batch_size={self.batch_size}")
        pad = self.batch_size - len(features)
        arrays = []
        for name in ("input_ids", "input_mask", "segment_ids"):
            x = np.stack([getattr(f, name) for f in features])
            arrays.append(np.pad(x, [(0, pad), (0, 0)]))
        return np.asarray(self._fn(self._params, *arrays))[:, : len(features)]


def feature_json(feature: Features, values: np.ndarray, layers: Sequence[int]) -> dict[str, Any]:
    """One output object; `values [len(layers), max_seq_length, hidden]`."""
    tokens = []
    for t, token in enumerate(feature.tokens):
        per_layer = [
            {"index": index, "values": [round(v, 6) for v in values[j, t].tolist()]}
            for j, index in enumerate(layers)
        ]
        tokens.append({"token": token, "layers": per_layer})
    return {"linex_index": feature.unique_id, "features": tokens}


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def extract_features(
    lines: Iterable[str], tokenizer: Tokenizer, extractor: FeatureExtractor
) -> Iterator[dict]:
    """One JSON-ready dict per input line, in order, computed a batch at a time."""
    for examples in _chunks(read_examples(lines), extractor.batch_size):
        features = convert_examples(examples, tokenizer, extractor.max_seq_length)
        values = extractor(features)
        for i, feature in enumerate(features):
            yield feature_json(feature, values[:, i], extractor.layers)
