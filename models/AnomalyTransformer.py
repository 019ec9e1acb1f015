"""Anomaly Transformer (Xu, Wu, Wang & Long, ICLR 2022), written from the paper for the shared loop.

A reconstruction Transformer whose attention also carries a *prior*: each
layer compares where a point attends (the **series association**, softmax
attention) with where a point "should" attend if it only knew its position
(the **prior association**, a learnable Gaussian kernel of the distance
|i - j|). Normal points attend far along the series (periodicity, trend);
anomalies are rare, so their attention concentrates on their neighbours, like
the prior: a *small* association discrepancy marks an anomaly.

    x [B, L, C]
     ├─ embedding: Linear C→d + fixed sinusoidal positions, dropout               h [B, L, d]
     ├─ × e_layers  anomaly attention (H heads, d_h = d/H):
     │     series  S = softmax(Q Kᵀ / √d_h)                                         [B, H, L, L]
     │     sigma   σ = softplus(Linear_d→H(h)) + 1e-3  (one scale per token, head)  [B, H, L]
     │     prior   P_ij = exp(−|i−j|² / 2σ_i²) / Σ_j exp(−|i−j|² / 2σ_i²)           [B, H, L, L]
     │     h = LN(h + S V W_o);  h = LN(h + FFN_{d→d_ff→d}(h))      (GELU)           [B, L, d]
     └─ x̂ = Linear_d→C(h)                                                         [B, L, C]

    AssDis(P, S)_i = mean over layers and heads of KL(P_i ‖ S_i) + KL(S_i ‖ P_i)     [B, L]   (Eq. 3)

The Gaussian's normalising factor 1/(√2π σ_i) cancels in the row
normalisation, so the prior is computed as a softmax over j of
−|i−j|²/2σ_i² (stable for any σ); the symmetric KL is
Σ_j (p − q)(log(p + ε) − log(q + ε)) (ε: see Bounded KL below).

**Minimax training** (Sec. 3.2). The paper's two phases, with λ = `--k`:

- minimise phase: the prior approaches the series, the series held fixed:
  `rec + k · AssDis(P, sg(S))`;
- maximise phase: the series moves away from the prior, the prior held fixed:
  `rec − k · AssDis(sg(P), S)`

(`sg` = stop-gradient; written in the paper as L_Total(X̂, P, S_detach, −λ) and
L_Total(X̂, P_detach, S, λ) with L_Total = rec − λ·‖AssDis‖₁. Some write-ups
swap the two phase names; the scalar below is the same either way.) The
published code back-propagates both phase losses and then
takes ONE optimiser step, so the step uses the sum of the two gradients. A
gradient is linear in the loss, so that is exactly the gradient of one scalar

    loss = 2 · rec + k · AssDis(P, sg(S)) − k · AssDis(sg(P), S)

which is what `loss()` returns (`task` = rec, the MSE, for validation and
early stopping). Its *value* is 2·rec (the two discrepancy terms are equal
numbers); its gradient is: σ's projection gets +k·∂AssDis/∂σ only (it does not
touch x̂, and S is stopped in the one term it appears in); the query/key
projections get 2·∂rec − k·∂AssDis (P is stopped in the other term); the value,
output, FFN, embedding and head get 2·∂rec, plus, through the hidden states
feeding deeper layers' Q, K and σ, both discrepancy terms. `tests/models/
test_anomaly_transformer.py` checks these signs with `torch.autograd.grad`.

**Anomaly score** (Eq. 6): `softmax over the window's L points of
(−AssDis / τ) ⊙ ‖x_i − x̂_i‖²` (squared error as a mean over channels, as
this repository's other scores), with AssDis the layer *mean* of Eq. 3.
Eq. 6 states no temperature, and we keep it so: τ = 1 (`TEMPERATURE`). The
published code instead multiplies each layer's symmetric KL by 50 and *sums*
the layers before the softmax (τ = 1/150 for 3 layers), which makes the
weights nearly one-hot within each window. Measured on the default Synthetic
data (one epoch, 37 steps at lr 1e-4, d_model 32, d_ff 64, 4 heads; test
AUC-ROC): reconstruction error alone 0.672, Eq. 6 with τ = 1 0.681, the
published temperature 0.540. It is a choice where the paper is silent;
`model.temperature` changes it. The softmax is per window, so a point's score
depends on the window that owns it (the loop's default test windows do not
overlap).

**Bounded KL.** Each log in the KL gets `KL_EPS = 1e-4` added (as the
published code; the paper is silent). Without it the maximise phase has no
bound: a narrow prior gives log P_ij = −|i−j|²/2σ² → −∞ far from i, and the
series, pushed away from the prior, drove AssDis to 200-3000 nats within 37
steps (measured), with scores at chance. With it a row's KL is at most about
log(1/ε) ≈ 9.2 each way.

Defaults (`DEFAULTS`, used when the run.py flag is unset): `--e_layers 3`,
`--d_ff 512`, `--k 3`, as the paper. `--d_model`, `--n_heads`, `--dropout`
are the common flags (run.py: 128, 8, 0.1); the paper uses d_model 512,
8 heads, and its code no dropout. Not reproduced: the published embedding
(a circular Conv1d token embedding; here a linear map), its σ transform
(sigmoid, then 3^σ − 1; here softplus, unbounded), and its batch size and
learning rate (the loop's `--batch_size`/`--learning_rate` apply).

**Relation to CrossAlign.** The paper's published CrossAlign code is built
on the Anomaly Transformer code base: its solver's threshold (percentile of
train + test scores) and point adjustment are the `paper` protocol of
README, Evaluation. The CrossAlign *model* (README, The model) has no prior
association, no minimax and no association weighting: it scores a point by
its reconstruction error alone (mean over channels). This file scores by the
association-based criterion above, so the two share an evaluation heritage
and differ in model, objective and score.
"""
from __future__ import annotations

import math
from argparse import Namespace

import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"e_layers": 3, "d_ff": 512, "k": 3.0}  # the paper's (Sec. 4, implementation details)
TEMPERATURE = 1.0  # score = softmax(−AssDis / τ) ⊙ error: Eq. 6 as written (the published code: τ = 1/(50·layers))
SIGMA_MIN = 1e-3  # lower bound of the prior's scale σ, in time steps
KL_EPS = 1e-4  # added inside the KL's logs (published code; the paper is silent): bounds AssDis, see docstring


def options(args: Namespace) -> dict:
    """This model's options from the run.py namespace; unset (None) flags take `DEFAULTS`."""
    return {name: (getattr(args, name, None) if getattr(args, name, None) is not None else default)
            for name, default in DEFAULTS.items()}


def sinusoidal_positions(length: int, d: int, device=None) -> torch.Tensor:
    """Fixed positional encoding [length, d] (Vaswani et al., 2017)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # [L, 1]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


def gaussian_log_prior(sigma: torch.Tensor) -> torch.Tensor:
    """Log prior association [..., L, L] from scales σ [..., L]: row i = log of the row-normalised
    Gaussian kernel exp(−|i−j|² / 2σ_i²) over j."""
    L = sigma.shape[-1]
    idx = torch.arange(L, device=sigma.device, dtype=sigma.dtype)
    dist2 = (idx[:, None] - idx[None, :]) ** 2  # [L, L]
    return torch.log_softmax(-dist2 / (2 * sigma[..., :, None] ** 2), dim=-1)


def symmetric_kl(log_p: torch.Tensor, log_q: torch.Tensor, eps: float = KL_EPS) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) along the last axis, from the logs, with `eps` added inside each log (see KL_EPS):
    Σ_j (p − q)(log(p + eps) − log(q + eps)). [..., L, L] -> [..., L]."""
    p, q = log_p.exp(), log_q.exp()
    return ((p - q) * (torch.log(p + eps) - torch.log(q + eps))).sum(-1)


def association_discrepancy(log_priors: list[torch.Tensor], log_series: list[torch.Tensor]) -> torch.Tensor:
    """AssDis (Eq. 3) per point [B, L]: symmetric KL of each layer's prior and series [B, H, L, L],
    averaged over heads and layers."""
    per_layer = [symmetric_kl(p, s).mean(1) for p, s in zip(log_priors, log_series)]  # each [B, L]
    return torch.stack(per_layer).mean(0)


class AnomalyAttention(nn.Module):
    """`forward(h [B, L, d]) -> (S V W_o [B, L, d], log series [B, H, L, L], log prior [B, H, L, L])`."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"--n_heads {n_heads} must divide --d_model {d_model}")
        self.n_heads = n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.sigma = nn.Linear(d_model, n_heads)  # one scale per token and head
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor):
        B, L, d = h.shape
        H, dh = self.n_heads, d // self.n_heads
        q = self.q(h).reshape(B, L, H, dh).transpose(1, 2)  # [B, H, L, dh]
        k = self.k(h).reshape(B, L, H, dh).transpose(1, 2)
        v = self.v(h).reshape(B, L, H, dh).transpose(1, 2)
        log_series = torch.log_softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [B, H, L, L]
        sigma = F.softplus(self.sigma(h)).transpose(1, 2) + SIGMA_MIN  # [B, H, L]
        log_prior = gaussian_log_prior(sigma)  # [B, H, L, L], rows sum to 1
        out = self.drop(log_series.exp()) @ v  # [B, H, L, dh]
        return self.o(out.transpose(1, 2).reshape(B, L, d)), log_series, log_prior


class EncoderLayer(nn.Module):
    """Anomaly attention and a feed-forward block, each with a residual and a post-LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn = AnomalyAttention(d_model, n_heads, dropout)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor):
        a, log_series, log_prior = self.attn(h)
        h = self.norm1(h + self.drop(a))  # [B, L, d]
        h = self.norm2(h + self.drop(self.ff(h)))
        return h, log_series, log_prior


class Model(nn.Module):
    def __init__(self, args: Namespace) -> None:
        super().__init__()
        opt = options(args)
        self.e_layers, self.d_ff, self.k = int(opt["e_layers"]), int(opt["d_ff"]), float(opt["k"])
        self.d_model, self.n_heads, self.channels = args.d_model, args.n_heads, args.enc_in
        self.temperature = TEMPERATURE
        self.embed = nn.Linear(args.enc_in, args.d_model)
        self.drop = nn.Dropout(args.dropout)
        self.layers = nn.ModuleList(EncoderLayer(args.d_model, args.n_heads, self.d_ff, args.dropout)
                                    for _ in range(self.e_layers))
        self.head = nn.Linear(args.d_model, args.enc_in)

    @staticmethod
    def setting_tags(args: Namespace) -> list[str]:
        o = options(args)
        return [f"dm{args.d_model}", f"nh{args.n_heads}", f"el{o['e_layers']}", f"df{o['d_ff']}", f"k{o['k']:g}",
                f"do{args.dropout:g}"]

    def associations(self, x: torch.Tensor):
        """`x` [B, L, C] -> (x̂ [B, L, C], log priors, log series: one [B, H, L, L] per layer)."""
        L = x.shape[1]
        h = self.drop(self.embed(x) + sinusoidal_positions(L, self.d_model, x.device))  # [B, L, d]
        log_priors, log_series = [], []
        for layer in self.layers:
            h, s, p = layer(h)
            log_series.append(s)
            log_priors.append(p)
        return self.head(h), log_priors, log_series

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.associations(x)[0]  # x̂ [B, L, C]

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(2·rec + k·AssDis(P, sg S) − k·AssDis(sg P, S), rec)`: both minimax phases in one scalar (docstring)."""
        x_hat, log_priors, log_series = self.associations(x)
        rec = torch.mean((x_hat - x) ** 2)
        prior_phase = association_discrepancy(log_priors, [s.detach() for s in log_series]).mean()
        series_phase = association_discrepancy([p.detach() for p in log_priors], log_series).mean()
        return 2 * rec + self.k * prior_phase - self.k * series_phase, rec

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Association-based criterion (Eq. 6) [B, L]: softmax over the window's points of −AssDis/τ, times
        the point's reconstruction error (mean over channels)."""
        x_hat, log_priors, log_series = self.associations(x)
        err = torch.mean((x_hat - x) ** 2, dim=-1)  # [B, L]
        dis = association_discrepancy(log_priors, log_series)  # [B, L]
        return torch.softmax(-dis / self.temperature, dim=-1) * err

    def describe(self) -> dict:
        return {"architecture": "Anomaly Transformer (Xu et al., ICLR 2022): anomaly attention with a Gaussian "
                                "prior, minimax association discrepancy, association-based score",
                "e_layers": self.e_layers, "d_model": self.d_model, "n_heads": self.n_heads, "d_ff": self.d_ff,
                "k": self.k, "score_temperature": self.temperature, "pretrained": False}
