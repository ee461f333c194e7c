"""`bert-jax convert`: Hugging Face / Google TF checkpoints to ours, ours to
Hugging Face.

Reading every format is `bert_jax.checkpoints`' job (it holds the one name
table); this module adds the export to the Hugging Face layout
(`model.safetensors` + `config.json`, loadable by
`transformers.BertModel.from_pretrained`) and the two conversion jobs.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

import numpy as np

from bert_jax import checkpoints
from bert_jax.errors import CheckpointError, UserError
from bert_jax.model import ModelConfig

IMPORT_FORMATS = {"hf": checkpoints.load_hf, "tf": checkpoints.load_google_tf}

_HF_ACT = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu"}


def hf_architecture(params: checkpoints.Params) -> str:
    """The Hugging Face class matching the heads `params` has."""
    if "classifier" in params:
        return "BertForSequenceClassification"
    if "mlm" in params and "pair" in params:
        return "BertForPreTraining"
    if "mlm" in params:
        return "BertForMaskedLM"
    return "BertModel"


def hf_config(cfg: ModelConfig, architecture: str) -> dict[str, Any]:
    """`config.json` for `transformers.BertConfig`."""
    if cfg.embedding_size or cfg.share_layers or cfg.position_offset:
        raise CheckpointError(
            "only plain BERT exports to the Hugging Face BERT layout; this model has ALBERT/RoBERTa "
            f"settings (embedding_size={cfg.embedding_size}, share_layers={cfg.share_layers}, "
            f"position_offset={cfg.position_offset})"
        )
    config = {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": _HF_ACT[cfg.hidden_act],
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }
    if architecture == "BertForSequenceClassification":
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return config


def hf_state(params: checkpoints.Params, cfg: ModelConfig) -> tuple[dict[str, np.ndarray], str]:
    """Our params (any layer layout) -> (Hugging Face state dict, architecture).

    Encoder names get the `bert.` prefix unless the architecture is BertModel;
    the tied MLM decoder is left out, as `save_pretrained` does."""
    params = checkpoints.with_layer_layout(params, cfg.replace(scan_layers=False, share_layers=False))
    architecture = hf_architecture(params)
    flat = checkpoints.flatten_params(params)
    prefix = "" if architecture == "BertModel" else "bert."
    state = {}
    for entry in checkpoints.hf_table(cfg):
        if entry.path not in flat:
            continue
        name = entry.hf_name if entry.group in ("mlm", "pair", "classifier") else prefix + entry.hf_name
        state[name] = checkpoints.ours_to_hf(entry.kind, flat[entry.path], cfg)
    return state, architecture


def export_hf(
    params: checkpoints.Params,
    cfg: ModelConfig,
    output: str | os.PathLike,
    vocab_file: str | None = None,
    lower_case: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Writes a Hugging Face folder atomically; returns a summary dict."""
    from safetensors.numpy import save_file

    params = checkpoints.numpy_params(params)
    state, architecture = hf_state(params, cfg)
    with checkpoints.atomic_directory(output, overwrite) as tmp:
        save_file(state, str(tmp / checkpoints.HF_SAFETENSORS), metadata={"format": "pt"})
        (tmp / checkpoints.HF_CONFIG).write_text(json.dumps(hf_config(cfg, architecture), indent=2) + "\n")
        if vocab_file:
            shutil.copyfile(vocab_file, tmp / checkpoints.VOCAB_FILE)
        if lower_case is not None:
            tokenizer = {"do_lower_case": bool(lower_case), "tokenizer_class": "BertTokenizer"}
            (tmp / checkpoints.TOKENIZER_CONFIG).write_text(json.dumps(tokenizer, indent=2) + "\n")
    return {
        "output": str(output),
        "architecture": architecture,
        "tensors": len(state),
        "parameters": int(sum(x.size for x in state.values())),
    }


def import_checkpoint(
    source_format: str, input_path: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False
) -> dict[str, Any]:
    """A Hugging Face folder (`hf`) or Google TF checkpoint (`tf`) -> our model
    checkpoint at `output`; returns a summary dict."""
    if source_format not in IMPORT_FORMATS:
        raise UserError(f"--from={source_format!r}; expected one of {sorted(IMPORT_FORMATS)}")
    cfg, params, meta = IMPORT_FORMATS[source_format](input_path)
    checkpoints.save_model(output, cfg, params, meta["vocab_file"], meta["lower_case"], overwrite=overwrite)
    return _summary(output, cfg, params, meta)


def export_checkpoint(
    input_path: str | os.PathLike, output: str | os.PathLike, step: int | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Any checkpoint `load_model` reads (ours, a workdir, ...) -> a Hugging Face folder."""
    cfg, params, meta = checkpoints.load_model(input_path, step=step)
    summary = export_hf(params, cfg, output, meta["vocab_file"], meta["lower_case"], overwrite=overwrite)
    return {**summary, "source": meta["path"], "source_format": meta["format"]}


def _summary(output, cfg: ModelConfig, params, meta) -> dict[str, Any]:
    flat = checkpoints.flatten_params(params)
    return {
        "output": str(pathlib.Path(output)),
        "source": meta["path"],
        "source_format": meta["format"],
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "heads": sorted(k for k in params if k != "bert")
        + (["pooler"] if "pooler" in params["bert"] else []),
        "parameters": int(sum(x.size for x in flat.values())),
        "vocab_file": meta["vocab_file"],
        "lower_case": meta["lower_case"],
    }
