"""The backbone families CrossAlign can run: one frozen record per family holding every fact the code needs.

Adding a family (one whose blocks take ``block(h, **kwargs)`` and whose
module tree transformers builds with ``AutoModel``) is one ``Family`` record
in ``FAMILIES``. Every attribute path is relative to the *base* model (the
transformers model without its LM head, before peft wraps it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

__all__ = ["Family", "FAMILIES", "family_of", "get_path", "set_path"]


@dataclass(frozen=True)
class Family:
    """How one transformer family is loaded, adapted and run."""
    name: str  # reported as describe()["family"]
    label: str  # for the "not supported" message
    model_types: tuple[str, ...]  # transformers' config.model_type values of this family
    lora_targets: tuple[str, ...]  # module names peft adapts: the attention and MLP projections
    blocks: str  # the block list
    embedding: str  # the token embedding (handed out, then dropped after loading)
    positions: str | None  # absolute position table (frozen), None for rotary models
    final_norm: str | None  # norm after the last block in pre-LN models
    input_norm: str | None = None  # norm applied to the embeddings before the first block (BERT)
    token_type: str | None = None  # token-type table whose row 0 is added before input_norm (BERT)
    rotary: str | None = None  # rotary module giving each block its (cos, sin) position tables (Llama)
    fan_in_fan_out: bool = False  # weights stored [in, out] (GPT-2's Conv1D): peft must transpose
    drop_pooler: bool = False  # AutoModel would add a pooling head we never use


FAMILIES: tuple[Family, ...] = (
    Family("gpt2", "GPT-2", ("gpt2",),
           # c_proj is both the attention output and the MLP output
           lora_targets=("c_attn", "c_proj", "c_fc"),
           blocks="h", embedding="wte", positions="wpe", final_norm="ln_f", fan_in_fan_out=True),
    Family("bert", "BERT-like encoders", ("bert", "roberta"),
           # dense: attention output, intermediate, output
           lora_targets=("query", "key", "value", "dense"),
           blocks="encoder.layer", embedding="embeddings.word_embeddings",
           positions="embeddings.position_embeddings", final_norm=None, input_norm="embeddings.LayerNorm",
           token_type="embeddings.token_type_embeddings", drop_pooler=True),
    Family("llama", "Llama-like decoders", ("llama", "mistral", "qwen2"),
           lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
           blocks="layers", embedding="embed_tokens", positions=None, final_norm="norm", rotary="rotary_emb"),
)

_BY_MODEL_TYPE = {model_type: fam for fam in FAMILIES for model_type in fam.model_types}


def family_of(model_type: str, name: str) -> Family:
    """The family of a transformers ``model_type``; ValueError naming the supported ones otherwise."""
    fam = _BY_MODEL_TYPE.get(model_type)
    if fam is None:
        labels = ", ".join(f.label for f in FAMILIES)
        raise ValueError(f"--llm {name}: model type {model_type!r} is not supported; supported families: "
                         f"{sorted(_BY_MODEL_TYPE)} ({labels})")
    return fam


def get_path(obj: nn.Module, path: str):
    """``get_path(m, "a.b")`` is ``m.a.b``."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def set_path(obj: nn.Module, path: str, value) -> None:
    """``set_path(m, "a.b", v)`` does ``m.a.b = v``."""
    *parents, last = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)
