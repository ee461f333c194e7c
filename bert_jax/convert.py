"""`bert-jax convert`: Hugging Face (BERT, RoBERTa, XLM-R, CamemBERT, ALBERT)
and Google TF checkpoints to ours, ours to Hugging Face.

Reading every format is `bert_jax.checkpoints`' job (it holds the one name
table); this module adds the export to the Hugging Face layout
(`model.safetensors` + `config.json`, loadable by
`transformers.AutoModel.from_pretrained`, the class of `ModelConfig.family`)
and the two conversion jobs. Its CLI is `bert_jax/commands/convert.py`.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
from typing import Any

import numpy as np

from bert_jax import checkpoints
from bert_jax.checkpoints import hf_modernbert
from bert_jax.errors import CheckpointError, UserError
from bert_jax.model import ModelConfig

IMPORT_FORMATS = {"hf": checkpoints.load_hf, "tf": checkpoints.load_google_tf}

_HF_ACT = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu"}
# What transformers' tokenizer classes of each family call their files.
_HF_TOKENIZER = {
    "bert": ("BertTokenizer", None),
    "roberta": ("RobertaTokenizer", None),
    "xlmr": ("XLMRobertaTokenizer", "sentencepiece.bpe.model"),
    "camembert": ("CamembertTokenizer", "sentencepiece.bpe.model"),
    "albert": ("AlbertTokenizer", "spiece.model"),
    "modernbert": ("PreTrainedTokenizerFast", None),
}


def hf_architecture(params: checkpoints.Params, family: str = "bert") -> str:
    """The Hugging Face class of `family` matching the heads `params` has
    (MLM + pair head -> *ForPreTraining where the family has one)."""
    hf = checkpoints.HF_FAMILIES[family]
    if "classifier" in params:
        return f"{hf.stem}ForSequenceClassification"
    if "mlm" in params and "pair" in params and hf.pretraining:
        return f"{hf.stem}ForPreTraining"
    if "mlm" in params:
        return f"{hf.stem}ForMaskedLM"
    return f"{hf.stem}Model"


def hf_config(cfg: ModelConfig, architecture: str) -> dict[str, Any]:
    """`config.json` for the `transformers` config class of `cfg.family`."""
    if cfg.family == "modernbert":
        return hf_modernbert.hf_config(cfg, architecture)
    if cfg.family == "bert" and (cfg.embedding_size or cfg.share_layers or cfg.position_offset):
        raise CheckpointError(
            "only plain BERT exports to the Hugging Face BERT layout; this model has ALBERT/RoBERTa "
            f"settings (embedding_size={cfg.embedding_size}, share_layers={cfg.share_layers}, "
            f"position_offset={cfg.position_offset}); set model.family to 'albert' or 'roberta'"
        )
    config = {
        "architectures": [architecture],
        "model_type": checkpoints.HF_FAMILIES[cfg.family].model_type,
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
    if cfg.family == "albert":
        config.update(embedding_size=cfg.embed_dim, num_hidden_groups=1, inner_group_num=1)
    if architecture.endswith("ForSequenceClassification"):
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return config


def hf_state(params: checkpoints.Params, cfg: ModelConfig) -> tuple[dict[str, np.ndarray], str]:
    """Our params (any layer layout) -> (Hugging Face state dict, architecture).

    Encoder names get the family's prefix (`bert.`, `roberta.`, `albert.`)
    unless the architecture is the bare *Model; the tied MLM decoder is left
    out, as `save_pretrained` does. A RoBERTa-family sequence classifier
    writes our pooler as its `classifier.dense`."""
    if cfg.family == "modernbert":  # fused Wqkv / Wi: its own mapping
        return hf_modernbert.hf_state(params, cfg)
    if cfg.family != "albert":
        # HF keeps one entry per layer: ALBERT's shared layer stays as it is, others unrolled.
        params = checkpoints.with_layer_layout(params, cfg.architecture.replace(share_layers=False))
    family = checkpoints.HF_FAMILIES[cfg.family]
    architecture = hf_architecture(params, cfg.family)
    flat = checkpoints.flatten_params(params)
    prefix = "" if architecture.endswith("Model") else family.prefix
    classifier = architecture.endswith("ForSequenceClassification")
    table = checkpoints.hf_table(cfg)
    claimed = {e.path for e in table if e.group == "classifier"} if classifier else set()
    state = {}
    for entry in table:
        if entry.path not in flat or (entry.group == "classifier" and not classifier):
            continue
        if entry.group == "pooler" and entry.path in claimed:
            continue  # RoBERTa: the pooler is written as the classification head's dense
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
        try:
            save_file(state, str(tmp / checkpoints.HF_SAFETENSORS), metadata={"format": "pt"})
        except Exception as e:  # safetensors' own error type wraps the OS error
            if isinstance(e, OSError) or type(e).__name__ == "SafetensorError":
                raise OSError(errno.EIO, str(e).splitlines()[0] if str(e) else type(e).__name__) from None
            raise
        (tmp / checkpoints.HF_CONFIG).write_text(json.dumps(hf_config(cfg, architecture), indent=2) + "\n")
        tokenizer_class, spm_name = _hf_tokenizer(cfg.family, vocab_file)
        if vocab_file:
            checkpoints.copy_tokenizer_files(vocab_file, tmp, spm_name)
        if lower_case is not None or cfg.family != "bert":
            tokenizer = {"tokenizer_class": tokenizer_class}
            if lower_case is not None:
                tokenizer["do_lower_case"] = bool(lower_case)
            if vocab_file and pathlib.Path(vocab_file).name == checkpoints.TOKENIZER_JSON:
                tokenizer.update(_special_tokens(vocab_file))
            (tmp / checkpoints.TOKENIZER_CONFIG).write_text(json.dumps(tokenizer, indent=2) + "\n")
    return {
        "output": str(output),
        "architecture": architecture,
        "tensors": len(state),
        "parameters": int(sum(x.size for x in state.values())),
    }


def _hf_tokenizer(family: str, vocab_file: str | os.PathLike | None) -> tuple[str, str | None]:
    """(transformers' tokenizer class, SentencePiece file name) for the
    exported folder: the family's, except that a ModernBERT's tokenizer is
    whatever files it has (tokenizer.json: PreTrainedTokenizerFast, which
    reads only that file; a byte-level BPE vocab.json: RobertaTokenizer; a
    WordPiece vocab.txt: BertTokenizer)."""
    name = pathlib.Path(vocab_file).name if vocab_file else ""
    if family == "modernbert" and name.endswith(".json") and name != checkpoints.TOKENIZER_JSON:
        return _HF_TOKENIZER["roberta"]
    if family == "modernbert" and name.endswith(".txt"):
        return _HF_TOKENIZER["bert"]
    return _HF_TOKENIZER[family]


def _special_tokens(tokenizer_json: str | os.PathLike) -> dict[str, str]:
    """`cls_token` ... `mask_token` of a tokenizer.json (as bert-jax reads its
    roles), for tokenizer_config.json: transformers' PreTrainedTokenizerFast
    knows them from there only (the fill-mask pipeline needs `mask_token`)."""
    from bert_jax.tokenization import load_tokenizer

    t = load_tokenizer(str(tokenizer_json))
    ids = {"cls": t.cls_id, "sep": t.sep_id, "pad": t.pad_id, "mask": t.mask_id, "unk": t.unk_id}
    return {f"{role}_token": t.vocab[i] for role, i in ids.items()}


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
