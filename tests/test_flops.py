"""bert_jax.flops: the analytic count against a hand count and against XLA's."""

import jax
import ml_collections
import pytest

from bert_jax import flops
from bert_jax.compile import hlo_flops
from bert_jax.config import model_config, pretrain_config
from bert_jax.model import Execution, ModelConfig

# Every layer at every position: the hand counts below are the standard formula.
# (A model that computes its last layer only where the heads read it counts
# that layer at those positions: Execution.last_layer_outputs_only.)
TINY = ModelConfig(
    vocab_size=100,
    hidden_size=8,
    num_layers=2,
    num_heads=2,
    intermediate_size=32,
    max_position_embeddings=16,
).with_execution(Execution(last_layer_outputs_only=False))


def test_forward_flops_hand_count():
    # B=2 sequences of L=4 tokens, P=1 masked position each; H=8, I=32, V=100.
    per_layer = (
        4 * (2 * 2 * 4 * 8 * 8)  # Q, K, V, output projections: 4 x 2*B*L*H*H = 4096
        + 2 * 4 * 4 * 8 * 2  # attention scores: 2*B*L*L*H = 512
        + 2 * 4 * 4 * 8 * 2  # attention context: 2*B*L*L*H = 512
        + 2 * (2 * 2 * 4 * 8 * 32)  # feed-forward in and out: 2 x 2*B*L*H*I = 8192
    )
    pooler = 2 * 2 * 8 * 8  # 2*B*H*H = 256
    nsp = 2 * 2 * 8 * 2  # 2*B*H*2 = 64
    mlm = 2 * 2 * 1 * 8 * 8 + 2 * 2 * 1 * 8 * 100  # transform 2*B*P*H*H + decoder 2*B*P*H*V = 256 + 3200
    assert per_layer == 13312
    expected = 2 * per_layer + pooler + nsp + mlm  # embeddings are lookups: 0
    assert expected == 30400
    assert flops.forward_flops(TINY, 2, 4, 1) == expected
    assert flops.train_step_flops(TINY, 2, 4, 1) == 3 * expected


def test_breakdown_parts():
    parts = flops.forward_flops_breakdown(TINY, 2, 4, 1)
    assert parts == {"embeddings": 0.0, "encoder": 26624.0, "pooler": 256.0, "pair": 64.0, "mlm": 3456.0}


def test_no_pair_head_counts_no_pooler():
    cfg = TINY.replace(pair_head="none")
    assert flops.forward_flops(cfg, 2, 4, 1) == 30400 - 256 - 64


def test_albert_factorised_embeddings():
    # E=4: projection 2*B*L*E*H = 2*2*4*4*8 = 512; MLM transform H->E and
    # decoder E->V: 2*2*1*8*4 + 2*2*1*4*100 = 128 + 1600.
    cfg = TINY.replace(embedding_size=4)
    parts = flops.forward_flops_breakdown(cfg, 2, 4, 1)
    assert parts["embeddings"] == 512
    assert parts["mlm"] == 128 + 1600


def test_masked_positions_only():
    # Each extra masked position costs 2*B*(H*H + H*V) more, the rest nothing.
    assert flops.forward_flops(TINY, 2, 4, 2) - flops.forward_flops(TINY, 2, 4, 1) == 2 * 2 * (64 + 800)


@pytest.mark.parametrize(("seq_len", "window"), [(1, 128), (4, 2), (100, 128), (300, 128), (513, 64), (9, 0)])
def test_mean_keys_per_query_counts_the_window(seq_len, window):
    half = window // 2
    keys = [
        seq_len if window == 0 else min(i + half, seq_len - 1) - max(i - half, 0) + 1 for i in range(seq_len)
    ]
    assert flops.mean_keys_per_query(seq_len, window) == sum(keys) / seq_len


def test_geglu_counts_the_gate_matrix():
    # A third H x I matrix per layer: 2*B*L*H*I = 2*2*4*8*32 = 4096 more per layer.
    cfg = TINY.replace(feed_forward="geglu")
    assert flops.forward_flops(cfg, 2, 4, 1) - flops.forward_flops(TINY, 2, 4, 1) == 2 * 4096


def test_local_layers_count_only_their_window():
    # 3 layers, global every 3rd: layers 1 and 2 attend to a 2-token window
    # (1 key each side): per query 2 keys at the ends of L=4, 3 inside -> mean 2.5
    # keys instead of 4, in scores and context: 2 * 2*B*L*(4 - 2.5)*H less per local layer.
    cfg = TINY.replace(num_layers=3, local_attention=2, global_attn_every_n_layers=3)
    full = TINY.replace(num_layers=3)
    saved = 2 * (2 * 2 * 4 * (4 - 2.5) * 8)
    assert flops.forward_flops(full, 2, 4, 1) - flops.forward_flops(cfg, 2, 4, 1) == 2 * saved


def _tiny_pretrain_config() -> ml_collections.ConfigDict:
    config = pretrain_config("tiny")
    config.batch_size = 8
    config.data.max_seq_length = 128
    config.data.max_predictions_per_seq = 20
    config.mesh.data = 1
    return config


@pytest.fixture(scope="session")
def xla_train_step():
    """The real train step (one CPU device, bert_tiny, B=8, L=128, P=20),
    compiled: XLA's whole FLOP count and its optimised HLO text."""
    from bert_jax.compile import aot

    config = _tiny_pretrain_config()
    program = aot.build_program(config, jax.devices()[:1])
    compiled = program.train_step.lower(program.state, program.batch, program.rng).compile()
    return float(compiled.cost_analysis()["flops"]), compiled.as_text()


def _analytic_tiny() -> float:
    return flops.train_step_flops(model_config(_tiny_pretrain_config()), 8, 128, 20)


def test_xla_matmul_flops_agree_with_the_analytic_count(xla_train_step):
    # The dots XLA compiled (forward, backward; MLM at the masked positions)
    # against bert_jax.flops.train_step_flops, the count bench's MFU uses.
    _, hlo = xla_train_step
    ratio = hlo_flops.dot_flops(hlo) / _analytic_tiny()
    assert abs(ratio - 1) < 0.02, ratio


def test_xla_whole_count_adds_the_elementwise_work(xla_train_step):
    total, hlo = xla_train_step
    # XLA also counts what the model FLOPs leave out (erf GELU, softmax,
    # LayerNorm, dropout's random bits, the loss, AdamW): 6.2% of the step at
    # this size with jax 0.10.2 (docs/scaling.md), less at larger hidden sizes.
    assert total > hlo_flops.dot_flops(hlo)
    ratio = total / _analytic_tiny()
    assert 1.0 <= ratio <= 1.08, ratio


# --- dot_flops on hand-sized programs -----------------------------------------


def _compiled_hlo(fn, *shapes) -> str:
    args = [jax.ShapeDtypeStruct(s, "float32") for s in shapes]
    return jax.jit(fn).lower(*args).compile().as_text()


def test_dot_flops_of_a_matmul():
    # [4,3] @ [3,5]: 4*5 outputs, 3 multiply-adds each, 2 FLOPs per multiply-add.
    assert hlo_flops.dot_flops(_compiled_hlo(lambda a, b: a @ b, (4, 3), (3, 5))) == 2 * 4 * 5 * 3


def test_dot_flops_of_a_batched_einsum_plus_elementwise():
    def fn(a, b):
        return jax.numpy.tanh(jax.numpy.einsum("bij,bjk->bik", a, b) + 1.0)

    # Batch 2 of [4,3] @ [3,5]; the add and tanh are not dots.
    assert hlo_flops.dot_flops(_compiled_hlo(fn, (2, 4, 3), (2, 3, 5))) == 2 * 2 * 4 * 5 * 3


def test_dot_flops_without_dots_is_zero():
    assert hlo_flops.dot_flops(_compiled_hlo(lambda a: a * 2.0, (4, 3))) == 0.0


def test_dot_flops_refuses_a_dot_it_cannot_read():
    text = "ENTRY %e {\n  ROOT %d = f32[4,5]{1,0} dot(%a, %b), lhs_contracting_dims={1}\n}"
    with pytest.raises(ValueError, match="dot d: cannot read its left operand"):
        hlo_flops.dot_flops(text)
