"""Per-token hidden states as JSON lines: the original BERT's `extract_features.py`.

One input line is `text` or `text_a ||| text_b`; its output object is
`{"linex_index": i, "features": [{"token": "[CLS]", "layers": [{"index": -1,
"values": [...]}, ...]}, ...]}` over every token including [CLS] and [SEP],
values rounded to 6 decimals. Layer index -1 is the last encoder layer's
output, 0 the first's (the embeddings are not a layer), as in the original.

Any tokenizer kind (bert_jax.tokenization.load_tokenizer): WordPiece gives
`[CLS] a [SEP] b [SEP]` with segments 0/1 (ALBERT's SentencePiece the same with
its own [CLS]/[SEP]); a RoBERTa-family model (one token type) gets RoBERTa's
`<s> a </s></s> b </s>`, all segment 0.

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
from bert_jax.model import BertModel, Execution, ModelConfig

_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


# Families whose pairs read `<s> a </s></s> b </s>` with one token type.
DOUBLE_SEPARATOR_FAMILIES = ("roberta", "xlmr", "camembert")


class Tokenizer(Protocol):
    """What extraction needs of a `bert_jax.tokenization` tokenizer (any kind)."""

    cls_id: int
    sep_id: int
    pad_id: int

    def encode(self, texts: list[str]) -> list[list[int]]: ...

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]: ...


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
    examples: Sequence[Example], tokenizer: Tokenizer, max_seq_length: int, double_separator: bool = False
) -> list[Features]:
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` (the tokenizer's own [CLS]/[SEP],
    e.g. <s>/</s>), truncated and padded with its pad id to `max_seq_length`;
    segment 0 for a (with [CLS] and its [SEP]), 1 for b. `double_separator`
    (RoBERTa): `<s> a </s></s> b </s>`, every segment 0."""
    ids_a = tokenizer.encode([e.text_a for e in examples])
    pairs = [e.text_b for e in examples if e.text_b is not None]
    ids_b = iter(tokenizer.encode(pairs) if pairs else [])
    cls, sep = [tokenizer.cls_id], [tokenizer.sep_id]
    middle = sep * (2 if double_separator else 1)
    features = []
    for example, a in zip(examples, ids_a, strict=True):
        b = next(ids_b) if example.text_b is not None else None
        if b is None:
            ids, segments = cls + a[: max_seq_length - 2] + sep, []
        else:
            truncate_pair(a, b, max_seq_length - 2 - len(middle))
            ids = cls + a + middle + b + sep
            segments = [0] * (1 + len(a) + len(middle)) + [0 if double_separator else 1] * (len(b) + 1)
        segments = segments or [0] * len(ids)
        tokens = tokenizer.convert_ids_to_tokens(ids)
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


def load_tokenizer(checkpoint: str, meta: dict, vocab: str | None, lower_case: bool | None):
    """The tokenizer (any kind) of `--vocab` where given, else of the checkpoint
    folder (a Hugging Face or bert-jax model folder: its tokenizer files, with
    the folder's tokenizer_class / model_type / family and do_lower_case),
    else of the training workdir's vocab. `lower_case` None: the checkpoint's
    setting, else the kind's default."""
    from bert_jax.tokenization import load_tokenizer as load

    if vocab:
        return load(vocab, lower_case=lower_case)
    # A model folder (ours, Hugging Face's, a pruned or quantised one): its
    # model_config.json / config.json name the SentencePiece id layout.
    if meta.get("format") in ("hf", "bert-jax", "bert-jax-pruned", "bert-jax-quantized") and meta.get("vocab_file"):
        return load(meta["path"], lower_case=lower_case)
    vocab, _ = tokenizer_settings(checkpoint, meta, None, lower_case)
    return load(vocab, lower_case=meta.get("lower_case") if lower_case is None else lower_case)


def check_tokenizer_fits(tokenizer, cfg: ModelConfig, source: str) -> None:
    """A tokenizer with more ids than the model's embedding table would give
    NaN vectors for the ids past it: refused, naming `source`."""
    size = getattr(tokenizer, "vocab_size", None)
    if isinstance(size, int) and size > cfg.vocab_size:
        raise UserError(
            f"the tokenizer {source} has {size} tokens but the checkpoint's vocab_size is {cfg.vocab_size}; "
            "its ids would index past the embedding table: use the checkpoint's own vocab (leave out --vocab)"
        )


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
        # Features are read in full precision, unrolled, whatever the training run did.
        cfg = cfg.with_execution(Execution())
        self.cfg, self.layers = cfg, tuple(layers)
        self.max_seq_length, self.batch_size = max_seq_length, batch_size
        bert = params["bert"]  # as load_model returns them: the canonical layout
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
            fill = self.cfg.pad_token_id if name == "input_ids" else 0  # RoBERTa pads with 1
            arrays.append(np.pad(x, [(0, pad), (0, 0)], constant_values=fill))
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
        double = extractor.cfg.family in DOUBLE_SEPARATOR_FAMILIES
        features = convert_examples(examples, tokenizer, extractor.max_seq_length, double)
        values = extractor(features)
        for i, feature in enumerate(features):
            yield feature_json(feature, values[:, i], extractor.layers)
