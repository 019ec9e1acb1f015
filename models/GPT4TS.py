"""GPT4TS ("One Fits All"): a frozen pretrained language model's first blocks; reconstruction and forecasting.

Zhou, Niu, Wang, Sun & Jin, "One Fits All: Power General Time Series Analysis
by Pretrained LM", NeurIPS 2023. Written here from the paper. Trained on the
reconstruction MSE; the anomaly score of a point is its squared reconstruction
error averaged over channels (the shared loop's defaults: no hooks).

    x [B, L, C] ─ instance normalisation per window and channel (undone on the output)
      → Linear C→d (input embedding, trained), dropout                               [B, L, d]
      → + the LM's own position embeddings (TRAINED)                                 [B, L, d]
      → first --llm_layers blocks of the LM: attention and feed-forward FROZEN,
        every layer norm TRAINED (GPT-2: ln_1, ln_2 and the final ln_f)              [B, L, d]
      → Linear d→C (output head, trained)                                            [B, L, C]

Forecasting form (``--task_name long_term_forecast``), channel independent as in the paper:

    x [B, L, C] ─ RevIN per window and channel (undone on the output)
      → per channel, N patches of --patch_len every --stride (layers/patch.py)       [B·C, N, p]
      → Linear p→d (trained), dropout, + the LM's position embeddings (TRAINED)      [B·C, N, d]
      → the same frozen blocks, norms trained                                        [B·C, N, d]
      → flatten, Linear N·d→P (trained)                                              [B, C, P] → [B, P, C]

with patches of 16 every 8 and 6 blocks (the paper's; ``models.MODEL_DEFAULTS``).

``d`` is the LM's width (768 for GPT-2, 384 for MiniLM). The backbone comes
from CrossAlign's loader, ``layers.llm.load_backbone``, without LoRA and with
``trainable=("norm", "position")``: GPT4TS reads CrossAlign's flags as they are,
``--llm`` (default gpt2; ``minilm`` offline, any id or folder), ``--llm_init``
(pretrained, or random: the same architecture without weights) and
``--llm_layers`` (default 6, GPT4TS's choice); the ``--lora_*`` flags are not used.
Rotary families (Llama-like) have no position table: only their norms train.

Choices, where the paper is silent or its anomaly setting differs from the
general architecture: one token per time point, no patching (the paper's
anomaly runs use patch size 1 and stride 1, which is the same thing); the
input embedding is one linear map of the C channels of a time point (no
convolution, no time features); normalisation = mean and standard deviation of
the whole window per channel, undone after the head (reverse instance
normalisation); the LM's own dropout stays active in training; decoders keep
their causal attention, encoders their bidirectional one.
"""
from __future__ import annotations

import os
from argparse import Namespace

import torch
from torch import nn

from layers.llm import load_backbone
from layers.patch import instance_norm, n_patches, patchify
from models import model_option

DEFAULT_LAYERS = 6  # GPT4TS keeps 6 GPT-2 blocks (also CrossAlign's --llm_layers default)


def _llm_options(args: Namespace) -> tuple[str, str, int]:
    llm = getattr(args, "llm", None) or "gpt2"
    init = getattr(args, "llm_init", None) or "pretrained"
    layers = getattr(args, "llm_layers", None) or DEFAULT_LAYERS
    return llm, init, int(layers)


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        llm, init, layers = _llm_options(args)
        if llm.lower() == "none":
            raise ValueError("GPT4TS needs a language model: --llm gpt2, minilm, smollm2, an id or a folder")
        self.backbone = load_backbone(llm, layers, init, lora=False, trainable=("norm", "position"))
        self.backbone.drop_token_embedding()  # fed embeddings, never token ids
        d = self.backbone.d_model
        self.dropout = nn.Dropout(args.dropout)
        self.forecast = getattr(args, "task_name", "anomaly_detection") == "long_term_forecast"
        if self.forecast:
            self.patch_len = int(model_option(args, "GPT4TS", "patch_len"))
            self.stride = int(model_option(args, "GPT4TS", "stride"))
            n = n_patches(int(args.seq_len), self.patch_len, self.stride)
            self.backbone.check_length(n)
            self.embed = nn.Linear(self.patch_len, d)  # [.., p] -> [.., d]
            self.head = nn.Sequential(nn.Flatten(-2), nn.Linear(n * d, int(args.pred_len)))  # [.., N, d] -> [.., P]
        else:
            self.backbone.check_length(int(args.seq_len))
            self.embed = nn.Linear(args.enc_in, d)  # [B, L, C] -> [B, L, d]
            self.head = nn.Linear(d, args.enc_in)  # [B, L, d] -> [B, L, C]

    @staticmethod
    def setting_tags(args) -> list[str]:
        llm, init, layers = _llm_options(args)
        tags = [f"llm{os.path.basename(llm.rstrip('/'))}-{init}-l{layers}"]
        if getattr(args, "task_name", None) == "long_term_forecast":
            tags.append(f"p{model_option(args, 'GPT4TS', 'patch_len')}s{model_option(args, 'GPT4TS', 'stride')}")
        return tags

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, mean, std = instance_norm(x)  # [B, L, C], [B, 1, C] twice
        if self.forecast:
            B, L, C = x.shape
            p = patchify(z.transpose(1, 2), self.patch_len, self.stride)  # [B, C, N, p]
            h = self.dropout(self.embed(p.reshape(B * C, *p.shape[2:])))  # [B*C, N, d]
            h = self.backbone(h, add_positions=True)  # [B*C, N, d]
            return self.head(h).reshape(B, C, -1).transpose(1, 2) * std + mean  # [B, P, C]
        h = self.dropout(self.embed(z))  # [B, L, d]
        h = self.backbone(h, add_positions=True)  # [B, L, d]
        return self.head(h) * std + mean  # [B, L, C]

    def describe(self) -> dict:
        form = f", patches {self.patch_len}/{self.stride}" if self.forecast else ""
        return {"architecture": f"GPT4TS (Zhou et al., NeurIPS 2023): frozen LM blocks, trained norms and "
                                f"positions{form}", "d_model": self.backbone.d_model, **self.backbone.describe()}
