"""CrossAlign: cross alignment of a state space model and an LLM for time series.

Paper: "Cross Alignment of State Space Model and LLMs for Time Series Anomaly
Detection" (README, The model). Anomaly form
(``task_name="anomaly_detection"``), shapes for a window ``x [B, L, C]``:

    t   = TimeEmbedding(x)                                   [B, L, d]  Linear C->d + trainable positions
    u   = LN(t + MHA(t, t, t))                               [B, L, d]
    h_t = head_time(LLM_lora(u) + t)                         [B, L, d]  first N blocks, LoRA on
    m   = Retrieval(t, P) x pmd_rounds                       [B, L, d]  P [K, d] principal memory
    h_p = head_pmd(LLM_frozen(m + frozen positions) + m)     [B, L, d]  same blocks, LoRA off
    s   = h_t + h_p;  aux = cons_weight * mean((h_t - h_p)^2)
    f   = FrequencyBranch(x)                                 [B, L//2+1, d]  Mamba -> rFFT -> [Re, Im] -> d
    x_hat = Linear_{d->C}(LN(s + MHA(q=s, k=f, v=f) W_m))    [B, L, C]

``forward`` returns ``(x_hat, aux)`` when PMD is on, else ``x_hat``; the
training loop adds ``aux`` (already weighted) to the reconstruction MSE.

Forecasting form (``task_name="long_term_forecast"``, README, Long-term
forecasting): each window is instance-normalised per variate (mean/std over
the lookback, undone on the output, as RevIN without affine parameters, Kim
et al., ICLR 2022); variates are tokens (each channel's lookback ``[L]`` ->
one token by ``Linear L->d``, as iTransformer and CALF); the LLM branch and
PMD run over the ``C`` variate tokens (no position embeddings: variates have
no order); the frequency branch runs over the lookback; cross-alignment
queries with the variate tokens; a linear head maps ``d -> pred_len``:
output ``[B, pred_len, C]``.

Options: ``CrossAlignConfig`` (``models/crossalign_config.py``), one field per
flag with its default and that default's source.

Choices where the paper is silent (the simplest faithful form):
- The consistency loss is symmetric (no stop-gradient on either side).
- The LLM output includes the backbone's final norm for pre-LN families
  (GPT-2 ``ln_f``), as ``GPT2Model(inputs_embeds=...)`` computes it.
- ``--llm none``: no LLM branch and no PMD (the memory is the LLM's
  vocabulary); the semantic tokens are the time embedding ``s = t`` and
  ``d = --d_model``.
- ``--freq_branch 0``: no Mamba/FFT branch and no cross-attention; the head
  reads ``LN(s)``.
"""
from __future__ import annotations

import os
from argparse import Namespace
from dataclasses import asdict, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from layers.attention import MultiHeadAttention
from layers.cross_alignment import CrossAlignment, FrequencyBranch
from layers.embed import TimeEmbedding, VariateEmbedding
from layers.llm import count_parameters, load_backbone
from layers.pmd import MemoryRetrieval, load_or_build_memory
from models.crossalign_config import LLM, CrossAlignConfig

_TASKS = ("anomaly_detection", "long_term_forecast")


def _arg(args: Namespace, name: str, default):
    """A flag of run.py's common group (task, width, heads, dropout), shared with the baselines."""
    value = getattr(args, name, None)
    return default if value is None else value


# options whose non-default values join the setting name (the ablation flags always do)
_TAGGED_WHEN_CHANGED = ("pmd_size", "pmd_rounds", "pmd_query", "cons_weight", "lora_r", "lora_alpha",
                        "lora_dropout", "d_ssm", "d_state", "d_conv", "expand")


class Model(nn.Module):
    """CrossAlign for anomaly detection (reconstruction) and long-term forecasting; see the module docstring."""

    @staticmethod
    def setting_tags(args: Namespace) -> list[str]:
        """Backbone and ablation tags for the run's setting name, plus any option changed from its default."""
        cfg = CrossAlignConfig.from_args(args)
        if cfg.llm.lower() == "none":  # no LLM branch: the LLM's options (PMD, LoRA, ...) change nothing
            tags, skip = ["llmnone"], {f.name for f in fields(CrossAlignConfig) if f.metadata["group"] == LLM}
        else:
            tags = [f"llm{os.path.basename(cfg.llm.rstrip('/'))}-{cfg.llm_init}-l{cfg.llm_layers}", f"pmd{cfg.pmd}"]
            skip = set()
        tags += [f"fb{cfg.freq_branch}", f"fft{cfg.fft}", f"ssm{cfg.ssm_layers}"]
        default = CrossAlignConfig()
        return tags + [f"{name}-{getattr(cfg, name)}" for name in _TAGGED_WHEN_CHANGED
                       if name not in skip and getattr(cfg, name) != getattr(default, name)]

    def __init__(self, args: Namespace) -> None:
        super().__init__()
        cfg = CrossAlignConfig.from_args(args)
        self.task = _arg(args, "task_name", "anomaly_detection")
        if self.task not in _TASKS:
            raise ValueError(f"CrossAlign supports --task_name {_TASKS}, got {self.task!r}")
        self.forecast = self.task == "long_term_forecast"
        c_in, seq_len = int(args.enc_in), int(args.seq_len)
        if c_in < 1 or seq_len < 2:
            raise ValueError(f"CrossAlign needs enc_in >= 1 channels and seq_len >= 2, got {c_in}, {seq_len}")
        self.c_in, self.seq_len = c_in, seq_len
        self.pred_len = int(args.pred_len) if self.forecast else None
        if self.forecast and self.pred_len < 1:
            raise ValueError(f"--pred_len must be >= 1, got {self.pred_len}")
        n_heads, dropout = int(_arg(args, "n_heads", 8)), float(_arg(args, "dropout", 0.1))
        llm_name = cfg.llm
        self.use_llm = llm_name.lower() != "none"
        self.use_pmd = self.use_llm and bool(cfg.pmd)
        self.use_freq = bool(cfg.freq_branch)
        self.cons_weight = float(cfg.cons_weight)
        self._info: dict = {"model": "CrossAlign", "task": self.task, "backbone": "none", "pretrained": None,
                            "weights_source": None, "pmd": self.use_pmd, "fft": bool(cfg.fft),
                            "freq_branch": self.use_freq}

        self.llm = None
        if self.use_llm:
            self.llm = load_backbone(llm_name, cfg.llm_layers, cfg.llm_init, cfg.lora_r, cfg.lora_alpha,
                                     cfg.lora_dropout)
            d = self.llm.d_model
            if not self.forecast and self.use_pmd:
                self.llm.check_length(seq_len)  # the frozen pass adds the LLM's own positions
            self._info.update(self.llm.describe())
        else:
            d = int(_arg(args, "d_model", 128))
        if d % n_heads:
            raise ValueError(f"--n_heads {n_heads} must divide the model width d={d} "
                             f"({'the LLM hidden size' if self.use_llm else '--d_model'}); e.g. --n_heads 8 or 12")
        self.d_model = d

        # tokens: time steps [B, L, d] or variates [B, C, d]
        self.embed = VariateEmbedding(seq_len, d, dropout) if self.forecast \
            else TimeEmbedding(c_in, d, seq_len, dropout)
        if self.use_llm:
            self.time_attn = MultiHeadAttention(d, n_heads, dropout)
            self.time_norm = nn.LayerNorm(d)
            self.head_time = nn.Linear(d, d)
        if self.use_pmd:
            memory, pmd_info = load_or_build_memory(self.llm.token_embedding, cfg.pmd_size, llm_name, cfg.llm_init)
            self.retrieval = MemoryRetrieval(memory, n_heads, cfg.pmd_rounds, dropout,
                                             fixed_query=cfg.pmd_query == "fixed")
            self.head_pmd = nn.Linear(d, d)
            self._info.update(pmd_info)
        if self.use_llm:
            self.llm.drop_token_embedding()  # W_te was only needed for the memory
        self.freq = None
        if self.use_freq:
            self.freq = FrequencyBranch(c_in, d, cfg.d_ssm, cfg.ssm_layers, cfg.d_state, cfg.d_conv, cfg.expand,
                                        bool(cfg.fft), cfg.ssm_backend)
        self.align = CrossAlignment(d, self.pred_len if self.forecast else c_in, n_heads, dropout,
                                    with_frequency=self.use_freq)
        if self.use_llm and int(_arg(args, "bf16", 0)):
            # runs only under bf16 autocast: frozen projections stored as autocast would cast them (no per-step cast)
            self.llm.keep_frozen_matrices_in(torch.bfloat16)
        trainable, total = count_parameters(self)
        self._info.update({"d_model": d, "trainable_params": trainable, "total_params": total,
                           "ssm_backend": cfg.ssm_backend, "config": asdict(cfg)})
        print(self.summary())

    # ------------------------------------------------------------------ provenance

    def describe(self) -> dict:
        """Backbone name, pretrained or not, weight source, parameter counts, PMD cache (for metrics.json)."""
        return dict(self._info)

    def summary(self) -> str:
        i = self._info
        if self.use_llm:
            llm = (f"LLM {i['backbone']} [{i['family']}, {'pretrained' if i['pretrained'] else 'RANDOM init'}, "
                   f"{i['llm_layers']}/{i['llm_layers_total']} blocks, d={i['d_llm']}] from {i['weights_source']}")
        else:
            llm = f"no LLM (--llm none), d={i['d_model']}"
        pmd = (f"PMD K={i['pmd_size']} ({'cache hit' if i['pmd_cache_hit'] else 'computed'}: {i['pmd_cache']})"
               if self.use_pmd else "PMD off")
        freq = ("frequency branch " + ("Mamba+rFFT" if i["fft"] else "Mamba, time domain (--fft 0)")
                if self.use_freq else "frequency branch off")
        return (f"CrossAlign ({self.task}): {llm}; {pmd}; {freq}; "
                f"params trainable {i['trainable_params']:,} / total {i['total_params']:,}")

    # ------------------------------------------------------------------ forward

    def _semantic(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Semantic tokens s [B, T, d] and the weighted consistency loss (None without PMD)."""
        if self.llm is None:
            return t, None
        u = self.time_norm(t + self.time_attn(t, t))  # [B, T, d]
        h_t = self.head_time(self.llm(u, adapters=True) + t)  # [B, T, d]
        if not self.use_pmd:
            return h_t, None
        m = self.retrieval(t)  # [B, T, d]
        # the frozen teacher: same blocks, LoRA off, the LLM's own (frozen) positions for time tokens
        h_p = self.head_pmd(self.llm(m, adapters=False, add_positions=not self.forecast) + m)  # [B, T, d]
        aux = self.cons_weight * F.mse_loss(h_t, h_p)
        return h_t + h_p, aux

    def forward(self, x: torch.Tensor):
        if x.dim() != 3 or x.shape[-1] != self.c_in:
            raise ValueError(f"CrossAlign expects x [batch, time, {self.c_in} channels], got {tuple(x.shape)}")
        if self.forecast:
            mu = x.mean(dim=1, keepdim=True).detach()  # [B, 1, C]
            sigma = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-5).detach()
            x = (x - mu) / sigma
        t = self.embed(x)  # [B, L, d] time tokens or [B, C, d] variate tokens
        s, aux = self._semantic(t)
        f = self.freq(x) if self.freq is not None else None  # [B, F, d]
        out = self.align(s, f)  # [B, L, C] or [B, C, pred_len]
        if self.forecast:
            out = out.transpose(1, 2) * sigma + mu  # [B, pred_len, C]
        return (out, aux) if aux is not None else out
