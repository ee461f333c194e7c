"""Analytic model FLOPs of BERT pre-training (matrix multiplies only).

The count is the "model FLOPs" of MFU: what the mathematics of the model needs,
independent of how a compiler implements it (no rematerialisation, no
elementwise work, no optimizer update). One multiply-add is 2 FLOPs.

Forward pass, for `B` sequences of `L` tokens, hidden `H`, intermediate `I`,
vocabulary `V`, embedding width `E` (ALBERT's factorisation, else `E = H`)
and `P` masked positions per sequence:

* embeddings: table lookups, 0 (ALBERT's E -> H projection: `2*B*L*E*H`);
* per layer: Q, K, V and output projections `4 * 2*B*L*H*H`, attention scores
  `2*B*L*K*H` and context `2*B*L*K*H`, feed-forward `2 * 2*B*L*H*I`
  (shared ALBERT layers count once per application). `K` is the mean number
  of keys a query attends to: `L` in a global layer; in a sliding-window layer
  (ModernBERT's local layers, `local_attention = W`) the positions within
  `W // 2` on either side, fewer at the ends, which is what the mathematics
  needs even where a kernel computes the full `L x L` and masks it. A gated
  feed-forward (GeGLU) has a third matrix, the gate: `3 * 2*B*L*H*I`;
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

from bert_jax.model import ModelConfig, execution_of


def forward_flops_breakdown(
    model_cfg: ModelConfig, batch: int, seq_len: int, max_predictions: int
) -> dict[str, float]:
    """Forward-pass FLOPs by part (`embeddings`, `encoder`, `pooler`, `pair`,
    `mlm`), for `batch` sequences of `seq_len` tokens with `max_predictions`
    masked positions each. Units: FLOPs (2 per multiply-add)."""
    b, s, p = batch, seq_len, max_predictions
    h, i, e, v = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.embed_dim, model_cfg.vocab_size
    tokens = b * s

    ffn_matrices = 3 if model_cfg.feed_forward == "geglu" else 2

    def layer(index: int, queries: int) -> float:
        """Layer `index` with `queries` positions per sequence attending to their keys."""
        q = b * queries
        keys = mean_keys_per_query(s, model_cfg.local_attention if model_cfg.layer_is_local(index) else 0)
        kv_projections = 2 * 2 * tokens * h * h
        q_out_projections = 2 * 2 * q * h * h
        attention = 2 * (2 * q * keys * h)
        ffn = ffn_matrices * (2 * q * h * i)
        return kv_projections + q_out_projections + attention + ffn

    last = model_cfg.num_layers - 1
    layers = sum(layer(index, s) for index in range(model_cfg.num_layers))
    execution = execution_of(model_cfg)  # a bare architecture: the default Execution()
    if execution.last_layer_outputs_only and not execution.scan_layers:
        outputs = p + (1 if model_cfg.pair_head != "none" else 0)
        layers += layer(last, outputs) - layer(last, s)
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


def mean_keys_per_query(seq_len: int, window: int) -> float:
    """Keys a query attends to, averaged over the `seq_len` positions: all of
    them (`window=0`, global attention), or those within `window // 2` on either
    side (a sliding window of `window` tokens; fewer near the ends)."""
    if window <= 0:
        return float(seq_len)
    half, s = window // 2, seq_len
    # sum over i of (min(i + half, s - 1) + 1) - max(i - half, 0), in closed form
    m = max(0, s - half)  # positions whose window reaches past neither end on the right
    right = m * (m - 1) // 2 + m * (half + 1) + (s - m) * s
    t = max(0, s - 1 - half)
    left = t * (t + 1) // 2
    return (right - left) / s


def forward_flops(model_cfg: ModelConfig, batch: int, seq_len: int, max_predictions: int) -> float:
    """FLOPs of one pre-training forward pass (MLM at the masked positions only)."""
    return sum(forward_flops_breakdown(model_cfg, batch, seq_len, max_predictions).values())


def train_step_flops(model_cfg: ModelConfig, batch: int, seq_len: int, max_predictions: int) -> float:
    """FLOPs of one pre-training step: forward + backward = 3x forward."""
    return 3.0 * forward_flops(model_cfg, batch, seq_len, max_predictions)
