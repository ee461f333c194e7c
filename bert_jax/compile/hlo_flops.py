"""XLA's matmul FLOPs, read from HLO text: the part of `cost_analysis()` that
the analytic model-FLOPs formula (`bert_jax.flops`) models.

XLA's `cost_analysis()["flops"]` is one number for the whole program: every
`dot` (2 FLOPs per multiply-add, as the formula counts) plus one FLOP per
element of every elementwise op and reduction (GELU, softmax, LayerNorm,
dropout's random bits, the loss, the AdamW update). Summing the `dot`
instructions of the compiled module separates the first from the rest.
"""

from __future__ import annotations

import math
import re

# `%name = f32[8,128]{1,0} opcode(operands), attributes`: array-shaped
# instructions (tuples are never dots).
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([^\s=]+)\s*=\s*\w+\[([\d,]*)\]\S*\s+([\w-]+)\((.*)$", re.M)
_OPERAND = re.compile(r"%([^\s,)]+)")
_LHS_CONTRACTING = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(",") if d)


def dot_flops(hlo_text: str) -> float:
    """FLOPs of every `dot` instruction in an HLO module's text (e.g.
    `jit(f).lower(...).compile().as_text()`): 2 x output elements x the
    contracted size of the left operand. Each instruction counts once: a dot
    inside a while loop's body (scanned layers) counts once, not once per
    iteration, so use it on unrolled programs. Raises ValueError for a dot
    whose operand shape the text does not give."""
    shapes: dict[str, tuple[int, ...]] = {}
    dots = []
    for name, dims, opcode, rest in _INSTRUCTION.findall(hlo_text):
        shapes[name] = _dims(dims)
        if opcode == "dot":
            dots.append((name, rest))
    total = 0.0
    for name, rest in dots:
        lhs = _OPERAND.search(rest)
        contracting = _LHS_CONTRACTING.search(rest)
        if lhs is None or contracting is None or lhs.group(1) not in shapes:
            raise ValueError(f"dot {name}: cannot read its left operand's shape or contracting dimensions")
        lhs_shape = shapes[lhs.group(1)]
        contracted = math.prod(lhs_shape[d] for d in _dims(contracting.group(1)))
        total += 2.0 * math.prod(shapes[name]) * contracted
    return total
