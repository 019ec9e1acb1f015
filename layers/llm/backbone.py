"""The backbone runner: the first N blocks of a language model with LoRA, run on embeddings.

``load_backbone`` builds a ``Backbone`` holding only the first ``n_layers``
blocks, with LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large
Language Models", ICLR 2022, through ``peft``) on the attention and MLP
projections and every base weight frozen. ``Backbone.forward`` runs the kept
blocks; what differs between families (rotary tables for Llama, where the
norms sit, BERT's embedding LayerNorm) is read from the family's record in
``layers/llm/families.py``.

``load_backbone(..., lora=False, trainable=("norm", "position"))`` gives the
plain blocks instead (no peft wrapper, every weight frozen except the named
kinds: every LayerNorm/RMSNorm, the absolute position table), the form GPT4TS
(Zhou et al., NeurIPS 2023) fine-tunes. The defaults (``lora=True``,
``trainable=()``) are CrossAlign's and run exactly the code they always did.

The token-embedding matrix ``W_te [V, d]`` is handed out once at load time
(``Backbone.token_embedding``, for the principal memory of ``layers/pmd.py``)
and then dropped from the module: the model is fed embeddings, never token ids.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import torch
import torch.nn as nn

from layers import fast_ops
from layers.llm.families import Family, family_of, get_path, set_path
from layers.llm.loading import count_parameters, load_base
from layers.llm.sources import BackboneSource, resolve_backbone

__all__ = ["Backbone", "load_backbone"]


class Backbone(nn.Module):
    """The first N blocks of a language model with LoRA adapters; base weights frozen.

    forward(h [B, T, d], adapters=True, add_positions=False) -> [B, T, d]:
    optionally adds the model's own (frozen) absolute position embeddings
    (GPT-2, BERT; Llama applies rotary positions inside attention regardless),
    applies BERT's embedding LayerNorm for BERT-like models, runs the kept
    blocks with the family's native attention pattern (causal for decoders,
    bidirectional for encoders), then the final norm of pre-LN families
    (GPT-2 ``ln_f``, Llama ``norm``), as ``GPT2Model(inputs_embeds=...)`` does.
    ``adapters=False`` runs the very same blocks with LoRA switched off and
    dropout off (the frozen, deterministic teacher of PMD); gradients still
    flow to the input.
    """

    def __init__(self, peft_model: nn.Module, family: Family, source: BackboneSource, pretrained: bool,
                 n_layers: int, total_layers: int, token_embedding: torch.Tensor | None,
                 lora: bool = True, trainable: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.lora = lora  # False: `peft_model` is the plain truncated base model (no adapters)
        self.trainable = tuple(trainable)  # base-weight kinds left trainable (load_backbone's `trainable`)
        self.model = peft_model  # peft.PeftModel around the truncated base model, or the base model itself
        self.family = family
        self.source = source
        self.pretrained = pretrained
        self.n_layers = n_layers
        self.total_layers = total_layers
        base = self.base
        self.d_model = int(base.config.hidden_size)
        self.max_positions = int(get_path(base, family.positions).num_embeddings) if family.positions \
            else None
        # not a buffer: only needed once, to build the principal memory; release with drop_token_embedding()
        self.token_embedding = token_embedding

    @property
    def base(self) -> nn.Module:
        return self.model.get_base_model() if self.lora else self.model

    def drop_token_embedding(self) -> None:
        self.token_embedding = None

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """LoRA off inside the block (peft's own switch); autograd records the graph as run."""
        if not self.lora:  # no adapters to switch off
            yield
            return
        with self.model.disable_adapter():
            yield

    def check_length(self, n_tokens: int) -> None:
        if self.max_positions is not None and n_tokens > self.max_positions:
            raise ValueError(f"{self.source.name} has {self.max_positions} position embeddings; a window of "
                             f"{n_tokens} tokens is too long: lower --seq_len or choose another --llm")

    def _run_blocks(self, h: torch.Tensor, add_positions: bool) -> torch.Tensor:
        base, fam = self.base, self.family
        n_tokens = h.shape[1]
        if add_positions and fam.positions is not None:
            self.check_length(n_tokens)
            h = h + get_path(base, fam.positions).weight[:n_tokens]  # [T, d] broadcast over batch
        if fam.input_norm is not None:
            if fam.token_type is not None:  # BERT adds token-type 0 to every token before its LayerNorm
                h = h + get_path(base, fam.token_type).weight[0]
            h = get_path(base, fam.input_norm)(h)
        kwargs = {}
        if fam.rotary is not None:
            pos_ids = torch.arange(n_tokens, device=h.device)[None]  # [1, T]
            kwargs["position_embeddings"] = get_path(base, fam.rotary)(h, pos_ids)  # (cos, sin) [1, T, head_dim]
        for block in get_path(base, fam.blocks):
            out = block(h, **kwargs)
            h = out[0] if isinstance(out, tuple) else out  # GPT-2/BERT return tuples, Llama a tensor
        if fam.final_norm is not None:
            h = get_path(base, fam.final_norm)(h)
        return h

    def forward(self, h: torch.Tensor, adapters: bool = True, add_positions: bool = False) -> torch.Tensor:
        if h.dim() != 3 or h.shape[-1] != self.d_model:
            raise ValueError(f"Backbone expects [batch, tokens, {self.d_model}], got {tuple(h.shape)}")
        if adapters:
            return self._run_blocks(h, add_positions)
        # the frozen teacher is deterministic: its blocks run with dropout off (eval mode), as a
        # distillation teacher does; the flag is restored afterwards, autograd is unaffected
        was_training = self.model.training
        self.model.eval()
        try:
            with self.adapters_disabled():
                return self._run_blocks(h, add_positions)
        finally:
            self.model.train(was_training)

    def keep_frozen_matrices_in(self, dtype: torch.dtype) -> int:
        """Store the frozen weight matrices of the blocks' projections in `dtype` (in place); returns how many.

        For bf16 autocast: autocast casts a frozen fp32 weight to bf16 at every use (it caches only
        weights that require gradients), i.e. twice per step here (LoRA student and frozen teacher);
        stored in bf16 the cast is a no-op and the values are the very same (autocast rounds the same
        way). Trainable parameters (LoRA, unfrozen norms), norms, biases and embedding tables keep
        their dtype. The model must then run under autocast of `dtype`.
        """
        n = 0
        for name, module in self.base.named_modules():
            weight = getattr(module, "weight", None)
            if "lora_" in name or isinstance(module, nn.Embedding) or not isinstance(weight, nn.Parameter):
                continue
            if weight.dim() == 2 and not weight.requires_grad and weight.dtype != dtype:
                weight.data = weight.data.to(dtype)
                n += 1
        return n

    def describe(self) -> dict:
        trainable, total = count_parameters(self)
        return {"backbone": self.source.name, "family": self.family.name, "pretrained": self.pretrained,
                "weights_source": self.source.description if self.pretrained
                else f"random init from the configuration of {self.source.description}",
                "llm_layers": self.n_layers, "llm_layers_total": self.total_layers, "d_llm": self.d_model,
                "llm_trainable_params": trainable, "llm_total_params": total,
                **({} if self.lora and not self.trainable else
                   {"llm_lora": self.lora, "llm_trainable_kinds": list(self.trainable)})}


TRAINABLE_KINDS = ("norm", "position")


def _unfreeze(base: nn.Module, fam: Family, kinds: tuple[str, ...]) -> None:
    """Mark the named kinds of base weights trainable: ``norm`` = every LayerNorm/RMSNorm module (GPT-2's
    ln_1/ln_2/ln_f, BERT's LayerNorms, Llama's RMSNorms), ``position`` = the absolute position table
    (none in rotary families: nothing to mark)."""
    if "norm" in kinds:
        for module in base.modules():
            if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm")):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(True)
    if "position" in kinds and fam.positions is not None:
        get_path(base, fam.positions).weight.requires_grad_(True)


def load_backbone(name: str, n_layers: int, init: str = "pretrained", lora_r: int = 8, lora_alpha: int = 16,
                  lora_dropout: float = 0.1, lora: bool = True, trainable: tuple[str, ...] = ()) -> Backbone:
    """Load the first `n_layers` blocks of `name`, wrap them with LoRA, freeze the rest.

    Args:
        name: ``--llm``: an offline short name (``minilm``, ``smollm2``), a local
            folder (config.json + weights, or a .gguf file), or a Hugging Face id.
        n_layers: blocks to keep (>= 1); more than the model has keeps them all, with a warning.
        init: "pretrained" reads the weights; "random" builds from the configuration only.
        lora_r, lora_alpha, lora_dropout: LoRA rank (>= 1), scale numerator, dropout.
        lora: False builds no adapters (the lora_* arguments are then unused): the plain blocks.
        trainable: base-weight kinds left trainable, from ``TRAINABLE_KINDS`` (``"norm"``, ``"position"``);
            every other base weight is frozen.
    Returns:
        a ``Backbone`` whose ``token_embedding`` holds ``W_te [V, d]`` (detached)
        until ``drop_token_embedding()``; the module itself no longer holds it.
    Raises:
        BackboneUnavailableError: weights not on disk and the Hub unreachable (fast, names the fixes).
        ValueError: bad arguments or an unsupported architecture (names the supported ones).
    """
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"--llm_layers must be a positive integer, got {n_layers!r}")
    if lora_r < 1:
        raise ValueError(f"--lora_r must be >= 1, got {lora_r}")
    if not 0.0 <= lora_dropout < 1.0:
        raise ValueError(f"--lora_dropout must be in [0, 1), got {lora_dropout}")
    if set(trainable) - set(TRAINABLE_KINDS):
        raise ValueError(f"trainable kinds {sorted(set(trainable) - set(TRAINABLE_KINDS))} unknown; "
                         f"choose from {TRAINABLE_KINDS}")
    src = resolve_backbone(name, init)
    base, total = load_base(src, n_layers, init)
    fam = family_of(base.config.model_type, name)
    # hand W_te out, then drop it from the module: the model is fed embeddings, never token ids
    token_embedding = get_path(base, fam.embedding).weight.detach().clone()  # [V, d]
    set_path(base, fam.embedding, None)

    if not lora:  # the plain blocks: everything frozen, then the requested kinds unfrozen
        base.requires_grad_(False)
        _unfreeze(base, fam, tuple(trainable))
        fast_ops.install(base)
        return Backbone(base, fam, src, init == "pretrained", base.config.num_hidden_layers, total,
                        token_embedding, lora=False, trainable=tuple(trainable))
    from peft import LoraConfig, get_peft_model
    lora_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none",
                             target_modules=list(fam.lora_targets), fan_in_fan_out=fam.fan_in_fan_out)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        logging.getLogger("peft").setLevel(logging.ERROR)
        peft_model = get_peft_model(base, lora_config)  # freezes every non-LoRA parameter
    fast_ops.install(peft_model.get_base_model())  # same maths, cheaper CPU dropout masks and attention
    if trainable:
        _unfreeze(peft_model.get_base_model(), fam, tuple(trainable))
    return Backbone(peft_model, fam, src, init == "pretrained", base.config.num_hidden_layers, total,
                    token_embedding, trainable=tuple(trainable))
