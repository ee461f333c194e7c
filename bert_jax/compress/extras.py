"""The compression jobs that need an optional extra, reachable without it.

`bert_jax.compress.quantize` imports Qwix, which only the `compress` extra
installs (`pip install -e '.[compress]'`). Nothing that does not quantise may
import it: `bert-jax finetune` reads a quantised checkpoint in predict mode,
so it asks `restore_quantized_for_predict`, which imports Qwix only for a
folder that is one (`quantization.json`), and otherwise returns None.
"""

from __future__ import annotations

import os
import pathlib

from bert_jax.errors import UserError

QUANT_CONFIG = "quantization.json"  # marks a `bert-jax quantize` output folder
COMPRESS_INSTALL = "pip install -e '.[compress]'"


def qwix_missing(reason: object) -> UserError:
    """The one-line error for a quantisation asked for without Qwix installed."""
    return UserError(f"int8 quantisation needs Qwix, which is not installed ({reason}); install the "
                     f"compress extra: {COMPRESS_INSTALL}")


def is_quantized(path: str | os.PathLike) -> bool:
    """Whether `path` is a quantised checkpoint folder (`bert-jax quantize`'s output)."""
    return (pathlib.Path(path) / QUANT_CONFIG).is_file()


def quantize_module():
    """`bert_jax.compress.quantize`; UserError naming the compress extra when Qwix is missing."""
    from bert_jax.compress import quantize  # raises qwix_missing(...) without Qwix

    return quantize


def restore_quantized_for_predict(path: str | os.PathLike):
    """`quantize.restore_for_predict(path)` for a quantised folder (Qwix then
    needed, and named when missing); None for any other folder, Qwix untouched."""
    if not is_quantized(path):
        return None
    return quantize_module().restore_for_predict(path)
