"""Build the truncated base model: the first N blocks of a backbone, with its weights or random ones.

The configuration is truncated *before* any weight is read, so the dropped
blocks are never materialised. ``init="random"`` builds the same
architecture from its configuration without any download (GPT-2 small's
configuration is transformers' ``GPT2Config()`` defaults).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

import torch.nn as nn

from layers.llm import gguf_reader
from layers.llm.families import family_of
from layers.llm.sources import BackboneSource

__all__ = ["load_base", "count_parameters"]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence 'weights not used' chatter: dropping the blocks past N is what we ask for."""
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _truncate_config(config, n_layers: int, name: str) -> int:
    """Keep the first `n_layers` blocks (set before any weight is read); return the full depth.

    Also swaps GPT-2's Python-level tanh-GELU (``gelu_new``: five elementwise
    kernels) for one module of the same formula (``gelu_pytorch_tanh``), which
    ``layers.fast_ops.install`` then runs as its C kernel (``TanhGELU``).
    """
    if getattr(config, "activation_function", None) == "gelu_new":
        config.activation_function = "gelu_pytorch_tanh"
    total = config.num_hidden_layers
    if n_layers > total:
        warnings.warn(f"--llm_layers {n_layers} exceeds the {total} blocks of {name}; using {total}")
        n_layers = total
    config.num_hidden_layers = n_layers  # GPT-2 maps this to n_layer
    return total


def _load_gguf(src: BackboneSource, n_layers: int, init: str) -> tuple[nn.Module, int]:
    from gguf import GGUFReader
    from transformers import LlamaModel
    reader = GGUFReader(os.path.join(src.path, src.gguf_file))
    cfg, _ = gguf_reader.llama_config(reader, None)
    total = _truncate_config(cfg, n_layers, src.name)
    model = LlamaModel(cfg)
    if init == "pretrained":
        model.load_state_dict(gguf_reader.llama_state_dict(reader, cfg, cfg.num_hidden_layers), strict=True)
    return model, total


def load_base(src: BackboneSource, n_layers: int, init: str) -> tuple[nn.Module, int]:
    """The truncated base model (no LM head) with its own weights or random ones; and the full depth."""
    from transformers import AutoConfig, AutoModel, GPT2Config
    if src.kind == "gguf":
        return _load_gguf(src, n_layers, init)
    if src.kind == "config":
        cfg = GPT2Config()
        total = _truncate_config(cfg, n_layers, src.name)
        cfg._attn_implementation = "sdpa"
        return AutoModel.from_config(cfg, attn_implementation="sdpa"), total
    location = src.path or src.name
    with _quiet_transformers():
        cfg = AutoConfig.from_pretrained(location, local_files_only=src.local_only)
        fam = family_of(cfg.model_type, src.name)  # fail before reading any weight
        total = _truncate_config(cfg, n_layers, src.name)
        extra = {"add_pooling_layer": False} if fam.drop_pooler else {}
        if init == "random":
            return AutoModel.from_config(cfg, attn_implementation="sdpa", **extra), total
        model = AutoModel.from_pretrained(location, config=cfg, local_files_only=src.local_only,
                                          attn_implementation="sdpa", **extra)
    return model, total


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total
