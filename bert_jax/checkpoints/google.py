"""An original Google BERT TensorFlow checkpoint (`bert_model.ckpt` prefix,
or the folder holding it with `bert_config.json`), read through the Hugging
Face name table. TensorFlow is imported only inside `load_google_tf`."""

from __future__ import annotations

import os
import pathlib
import re

from bert_jax.checkpoints.files import GOOGLE_CONFIG, VOCAB_FILE, checkpoint_meta, read_json
from bert_jax.checkpoints.hf import model_config_from_hf, params_from_hf_state
from bert_jax.checkpoints.params import Params
from bert_jax.errors import CheckpointError
from bert_jax.model import ModelConfig


def _google_to_hf_name(name: str) -> str | None:
    """`bert/encoder/layer_0/attention/self/query/kernel` ->
    `encoder.layer.0.attention.self.query.weight`; None for optimizer slots."""
    if name == "global_step" or re.search(r"(adam_[mv]|Adam|Momentum)", name):
        return None
    name = name.removeprefix("bert/")
    name = re.sub(r"layer_(\d+)", r"layer.\1", name)
    name = {
        "cls/predictions/output_bias": "cls/predictions/bias",
        "cls/seq_relationship/output_weights": "cls/seq_relationship/weight",
        "cls/seq_relationship/output_bias": "cls/seq_relationship/bias",
    }.get(name, name)
    name = re.sub(r"_embeddings$", "_embeddings/weight", name)
    name = re.sub(r"/(kernel|gamma)$", "/weight", name)
    name = re.sub(r"/beta$", "/bias", name)
    return name.replace("/", ".")


def _find_google_prefix(path: pathlib.Path) -> pathlib.Path:
    if path.is_dir():
        indexes = sorted(path.glob("*.ckpt*.index")) or sorted(path.glob("*.index"))
        if not indexes:
            raise CheckpointError(f"{path} holds no TF checkpoint (*.ckpt*.index)")
        return indexes[-1].with_suffix("")
    return path


def load_google_tf(path: str | os.PathLike) -> tuple[ModelConfig, Params, dict]:
    """An original Google BERT TF checkpoint (prefix like `.../bert_model.ckpt`,
    or the folder holding it) with `bert_config.json` beside it."""
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / GOOGLE_CONFIG).is_file():
        raise CheckpointError(
            f"{folder / GOOGLE_CONFIG} is missing; the original BERT release ships it beside the checkpoint"
        )
    cfg = model_config_from_hf(read_json(folder / GOOGLE_CONFIG), folder / GOOGLE_CONFIG)
    prefix = _find_google_prefix(path)
    import tensorflow as tf  # only here: the rest of bert-jax runs without TensorFlow

    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as e:  # TF raises NotFoundError / DataLossError / ValueError
        raise CheckpointError(f"{prefix} is not a readable TF checkpoint ({type(e).__name__})") from None
    state = {}
    for name in reader.get_variable_to_shape_map():
        hf_name = _google_to_hf_name(name)
        if hf_name is not None:
            x = reader.get_tensor(name)
            state[hf_name] = x.T if name.endswith("/kernel") else x
    cfg, params = params_from_hf_state(state, cfg, str(prefix))
    vocab = folder / VOCAB_FILE
    # The original infers casing from the release's folder name (uncased_L-12_H-768_A-12).
    lower_case = True if "uncased" in folder.name else (False if "cased" in folder.name else None)
    return cfg, params, checkpoint_meta("google-tf", prefix, str(vocab) if vocab.is_file() else None, lower_case)
