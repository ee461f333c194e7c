"""Analytic model FLOPs of BERT pre-training (matrix multiplies only).

The count is the "model FLOPs" of MFU: what the mathematics of the model needs,
independent of how a compiler implements it (no rematerialisation, no
elementwise work, no optimizer update). One multiply-add is 2 FLOPs.

Forward pass, for `B` sequences of `L` tokens, hidden `H`, intermediate `I`,
vocabulary `V`, embedding width `E` (ALBERT's factorisation, else `E = H`)
and `P` masked positions per sequence:

* embeddings: table lookups, 0 (ALBERT's E -> H projection: `2*B*L*E*H`);
* per layer: Q, K, V and output projections `4 * 2*B*L*H*H`, attention scores
  `2*B*L*L*H` and context `2*B*L*L*H`, feed-forward `2 * 2*B*L*H*I`
  (shared ALBERT layers count once per application);
* the last layer, when `last_layer_outputs_only` (and layers are not
  scanned), at the `Q = P + 1` positions read ([CLS] and the masked ones;
  `Q = P` without a pair head): K and V projections `2 * 2*B*L*H*H`, Q and
  output projections `2 * 2*B*Q*H*H`, scores and context `2 * 2*B*Q*L*H`,
  feed-forward `2 * 2*B*Q*H*I`;
* pooler `2*B*H*H` and NSP/SOP classifier `2*B*H*2` (when a pair head exists);
* MLM head at the `P` masked positions only: transform `2*B*P*H*E` and the
  tied decoder `2*B*P*E*V`.

A training step is 3x the forward pass: the backward pass needs two matmuls
(gradient w.r.t. the input and w.r.t. the weight) for every forward one.
"""

from __future__ import annotations

from bert_jax.model import ModelConfig


def forward_flops_breakdown(
    model_cfg: ModelConfig, batch: int, seq_len: int, max_predictions: int
) -> dict[str, float]:
    """Forward-pass FLOPs by part (`embeddings`, `encoder`, `pooler`, `pair`,
    `mlm`), for `batch` sequences of `seq_len` tokens with `max_predictions`
    masked positions each. Units: FLOPs (2 per multiply-add)."""
    b, s, p = batch, seq_len, max_predictions
    h, i, e, v = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.embed_dim, model_cfg.vocab_size
    tokens = b * s

    def layer(queries: int) -> int:
        """One layer whose `queries` positions per sequence attend to all `s`."""
        q = b * queries
        kv_projections = 2 * 2 * tokens * h * h
        q_out_projections = 2 * 2 * q * h * h
        attention = 2 * (2 * q * s * h)
        ffn = 2 * (2 * q * h * i)
        return kv_projections + q_out_projections + attention + ffn

    layers = model_cfg.num_layers * layer(s)
    if model_cfg.last_layer_outputs_only and not model_cfg.scan_layers:
        outputs = p + (1 if model_cfg.pair_head != "none" else 0)
        layers += layer(outputs) - layer(s)
    parts = {
        "embeddings": float(2 * tokens * e * h if model_cfg.embedding_size else 0),
        "encoder": float(layers),
        "pooler": 0.0,
        "pair": 0.0,
        "mlm": float(2 * b * p * h * e + 2 * b * p * e * v),
    }
    if model_cfg.pair_head != "none":
        parts["pooler"] = float(2 * b * h * h)
        parts["pair"] = float(2 * b * h * 2)
    return parts


def forward_flops(model_cfg: ModelConfig, batch: int, seq_len: int, max_predictions: int) -> float:
    """FLOPs of one pre-training forward pass (MLM at the masked positions only)."""
    return sum(forward_flops_breakdown(model_cfg, batch, seq_len, max_predictions).values())


def train_step_flops(model_cfg: ModelConfig, batch: int, seq_len: int, max_predictions: int) -> float:
    """FLOPs of one pre-training step: forward + backward = 3x forward."""
    return 3.0 * forward_flops(model_cfg, batch, seq_len, max_predictions)
