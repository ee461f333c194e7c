"""Sentence vectors and token states of one layer, from any checkpoint `load_model` reads.

`LayerEncoder` runs the encoder up to one layer (the layers above it are not
computed) over `[CLS] sentence [SEP]`, truncated to the model's length. A batch
is padded to the next length bucket of its longest sentence (sentences are
sorted by length first), so the jitted encoder compiles once per bucket, not
once per batch shape, and short sentences do not pay for the longest one.

Pooling (`pool`): the [CLS] state, or the mean or max over the real tokens
(including [CLS] and [SEP], as sentence-transformers does), optionally
L2-normalised. A sentence-transformers folder (modules.json) names its own
pooling (1_Pooling/config.json), normalisation (a Normalize module) and
maximum length (sentence_bert_config.json): `sentence_transformers_settings`.

`top_k`: exact cosine ranking of a corpus against a query, streamed in
batches with a running top K (no approximate index).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import json
import pathlib
from collections.abc import Iterable, Iterator, Sequence

import jax
import numpy as np

from bert_jax import checkpoints, features
from bert_jax.errors import UserError
from bert_jax.model import BertModel, Execution, ModelConfig

POOLINGS = ("cls", "mean", "max")
# Padded lengths a batch is rounded up to (then capped at the model's length).
BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def usable_length(cfg: ModelConfig, tokenizer_folder: str | None = None) -> int:
    """Tokens per sentence including [CLS]/[SEP]: the model's positions (less
    RoBERTa's offset), or the folder's tokenizer_config.json `model_max_length`
    where smaller (what Hugging Face tokenizers truncate to)."""
    length = cfg.max_position_embeddings - cfg.position_offset
    config = pathlib.Path(tokenizer_folder or "") / "tokenizer_config.json"
    if tokenizer_folder and config.is_file():
        try:
            declared = json.loads(config.read_text(encoding="utf-8")).get("model_max_length")
        except (OSError, ValueError):
            declared = None
        if isinstance(declared, int | float) and 3 <= declared < length:
            length = int(declared)
    return length


def check_layer(layer: int, cfg: ModelConfig) -> int:
    """`layer` (0 = the embeddings, N = encoder layer N's output) within the model."""
    if not 0 <= layer <= cfg.num_layers:
        raise UserError(
            f"--layer={layer} is outside the model: it has {cfg.num_layers} encoder layers, so pass "
            f"0 (the embeddings) to {cfg.num_layers}"
        )
    return layer


def _truncated(params: checkpoints.Params, cfg: ModelConfig, layers: int) -> tuple[ModelConfig, dict]:
    """(config, encoder params) of the model's first `layers` layers (at least one:
    layer 0, the embeddings, still needs an encoder to build), run as
    `Execution()`: full precision, unrolled layers. `params`: as `load_model`
    returns them (the canonical layout)."""
    keep = max(layers, 1)
    bert = params["bert"]
    encoder = bert["encoder"]
    if not cfg.share_layers:
        encoder = {f"layer_{i}": encoder[f"layer_{i}"] for i in range(keep)}
    heads = cfg.heads_per_layer[:keep] if cfg.heads_per_layer else None
    cfg = cfg.architecture.replace(num_layers=keep, heads_per_layer=heads).with_execution(Execution())
    bert = {k: v for k, v in bert.items() if k not in ("pooler", "encoder")}
    return cfg, {**bert, "encoder": encoder}


def _layer_states(model: BertModel, layer: int | None, params, input_ids, input_mask):
    """`[batch, seq, hidden]` of `layer`, or `[layers + 1, batch, seq, hidden]` for None."""
    out = model.apply({"params": params}, input_ids, input_mask, return_all_hidden=True)
    hidden = out["hidden_states"]  # [0] the embeddings, [i] encoder layer i's output
    return jax.numpy.stack(hidden) if layer is None else hidden[layer]


def bucket(length: int, cap: int) -> int:
    """The padded length for a batch whose longest sentence has `length` tokens."""
    return min(next((b for b in BUCKETS if b >= length), length), cap)


class LayerEncoder:
    """Token states of one layer (None: of every layer, 0 to N) for lists of token
    ids, jitted per length bucket."""

    def __init__(
        self, cfg: ModelConfig, params: checkpoints.Params, layer: int | None, max_length: int, batch_size: int = 64
    ):
        if batch_size < 1:
            raise UserError(f"--batch_size={batch_size} must be at least 1")
        self.layer = None if layer is None else check_layer(layer, cfg)
        self.max_length, self.batch_size = max_length, batch_size
        self.pad_id = cfg.pad_token_id
        small_cfg, self._params = _truncated(params, cfg, cfg.num_layers if layer is None else layer)
        self._params = jax.device_put(self._params)
        self._fn = jax.jit(functools.partial(_layer_states, BertModel(small_cfg, add_pooler=False), layer))

    def __call__(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """One `[len(ids[i]), hidden]` float32 array per sequence, in order
        (`[layers + 1, len(ids[i]), hidden]` for every layer)."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        states: list[np.ndarray | None] = [None] * len(ids)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            length = bucket(len(ids[chunk[0]]), self.max_length)
            input_ids = np.full([self.batch_size, length], self.pad_id, np.int32)
            mask = np.zeros([self.batch_size, length], np.int32)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            out = np.asarray(self._fn(self._params, input_ids, mask))
            for row, i in enumerate(chunk):
                states[i] = out[row, : len(ids[i])] if self.layer is not None else out[:, row, : len(ids[i])]
        return states  # type: ignore[return-value]


def with_specials(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """`[CLS] text [SEP]` ids per text (stripped), the text truncated to
    `max_length - 2` tokens: what Hugging Face's `encode(truncation=True)` does."""
    ids = tokenizer.encode([t.strip() for t in texts])
    return [[tokenizer.cls_id, *x[: max_length - 2], tokenizer.sep_id] for x in ids]


@dataclasses.dataclass(frozen=True)
class Pooling:
    """How token states become one vector, and the longest input in tokens (None: the model's)."""

    mode: str = "mean"
    normalize: bool = False
    max_length: int | None = None


def sentence_transformers_settings(folder: str | pathlib.Path) -> Pooling | None:
    """The pooling a sentence-transformers folder declares (modules.json), None
    for a folder without modules.json. A mode bert-jax does not offer is refused."""
    folder = pathlib.Path(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise UserError(f"{modules_file} is not a list of modules; it is not a sentence-transformers folder")
    mode, normalize = "cls", False
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if kind.endswith(".Pooling"):
            mode = _pooling_mode(folder / module.get("path", ""), modules_file)
        elif kind.endswith(".Normalize"):
            normalize = True
    settings = folder / "sentence_bert_config.json"
    max_length = _read_json(settings).get("max_seq_length") if settings.is_file() else None
    return Pooling(mode, normalize, int(max_length) if max_length else None)


def _pooling_mode(pooling_dir: pathlib.Path, modules_file: pathlib.Path) -> str:
    config_file = pooling_dir / "config.json"
    if not config_file.is_file():
        raise UserError(f"{modules_file} names a Pooling module but {config_file} is missing")
    config = _read_json(config_file)
    chosen = [m for m in POOLINGS if config.get(f"pooling_mode_{m}_tokens" if m != "cls" else "pooling_mode_cls_token")]
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in (
        "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")]
    if len(chosen) != 1 or others:
        raise UserError(
            f"{config_file}: pooling {sorted(k for k, v in config.items() if k.startswith('pooling_mode_') and v)} "
            "is not one of cls, mean or max, which is all bert-jax embed offers"
        )
    return chosen[0]


def _read_json(path: pathlib.Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({e}); restore the file") from None


def pool(states: np.ndarray, pooling: Pooling) -> np.ndarray:
    """`[tokens, hidden]` states (all real tokens) -> `[hidden]` float32 vector."""
    if pooling.mode == "cls":
        vector = states[0]
    elif pooling.mode == "mean":
        vector = states.astype(np.float64).mean(axis=0)
    else:
        vector = states.max(axis=0)
    vector = np.asarray(vector, np.float32)
    if pooling.normalize:
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return vector


class SentenceEncoder:
    """Texts -> pooled vectors, from the last layer of a model."""

    def __init__(self, cfg: ModelConfig, params, tokenizer, pooling: Pooling, max_length: int, batch_size: int = 64):
        if pooling.mode not in POOLINGS:
            raise UserError(f"--pooling={pooling.mode!r}; expected one of {', '.join(POOLINGS)}")
        self.tokenizer, self.pooling = tokenizer, pooling
        self.max_length = min(max_length, pooling.max_length or max_length)
        self.encoder = LayerEncoder(cfg, params, cfg.num_layers, self.max_length, batch_size)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """`[len(texts), hidden]` float32."""
        ids = with_specials(self.tokenizer, texts, self.max_length)
        return np.stack([pool(s, self.pooling) for s in self.encoder(ids)])

    def batches(self, texts: Iterable[str]) -> Iterator[np.ndarray]:
        """Vectors for a stream of texts, encoded many batches at a time."""
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == 16 * self.encoder.batch_size:
                yield self(chunk)
                chunk = []
        if chunk:
            yield self(chunk)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def top_k(query: np.ndarray, corpus_batches: Iterable[np.ndarray], k: int) -> list[tuple[float, int]]:
    """The `k` best (cosine, 0-based corpus index), best first; ties keep corpus order.
    Exact: every corpus vector is compared with the query."""
    q = unit(query.astype(np.float32))
    best: list[tuple[float, int]] = []  # a min-heap of (score, -index)
    offset = 0
    for vectors in corpus_batches:
        scores = unit(vectors.astype(np.float32)) @ q
        for i in np.argsort(-scores, kind="stable")[:k]:
            item = (float(scores[i]), -(offset + int(i)))
            if len(best) < k:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
        offset += len(vectors)
    return [(score, -neg) for score, neg in sorted(best, reverse=True)]


def load(checkpoint: str):
    """(cfg, params, meta, tokenizer) of any checkpoint `load_model` reads; one
    without tokenizer files is refused (a sentence cannot be turned into ids)."""
    cfg, params, meta = checkpoints.load_model(checkpoint)
    if not meta.get("vocab_file"):
        raise UserError(
            f"--checkpoint={checkpoint} has no tokenizer (no vocab.txt, vocab.json + merges.txt or SentencePiece "
            "model in it); copy the model's tokenizer files into it"
        )
    tokenizer = features.load_tokenizer(checkpoint, meta, None, None)
    features.check_tokenizer_fits(tokenizer, cfg, meta["vocab_file"])
    return cfg, params, meta, tokenizer


def read_lines(path: str, flag: str) -> list[str]:
    """A UTF-8 text file's lines without their newline (as bert_score's CLI reads them)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        raise UserError(f"--{flag}={path} does not exist; pass a text file with one sentence per line") from None
    except IsADirectoryError:
        raise UserError(f"--{flag}={path} is a directory; pass a text file with one sentence per line") from None
    except UnicodeDecodeError as e:
        raise UserError(f"--{flag}={path} is not UTF-8 text ({e.reason} at byte {e.start}); convert it") from None
    except OSError as e:
        raise UserError(f"--{flag}={path} cannot be read ({e.strerror})") from None
