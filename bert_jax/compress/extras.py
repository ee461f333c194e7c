"""What is known of quantised checkpoints without the optional extra.

`bert_jax.compress.quantize` imports Qwix, which only the `compress` extra
installs (`pip install -e '.[compress]'`). Nothing that does not quantise may
import it: this module holds what the rest needs without it (the marker file
of a quantised folder, the one-line error naming the extra), and the
commands import `quantize` only when a job needs it
(`bert_jax.commands.common.quantize_module`).
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
