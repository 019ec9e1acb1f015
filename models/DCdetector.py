"""DCdetector (Yang, Zhang, Zhou, Chen & Lin, KDD 2023), written from the paper for the shared loop.

Dual attention contrastive learning, no reconstruction. Each channel of a
window is cut into patches and seen twice: **patch-wise** (each patch is a
token, attention between patches) and **in-patch** (each position inside a
patch is a token, attention between positions). Both views' attention maps
are up-sampled to the same `[L, L]` point-to-point association; training pulls
the two views together on normal data, and a point where they still disagree
is anomalous (normal points share the window's latent pattern in both views,
anomalies do not).

    x [B, L, C] → instance norm (per window and channel) → channel-independent x [B·C, L]
    for each patch size p in --patch_size (n = L / p patches; point l = patch l // p, position l % p):
      patch-wise tokens  x.reshape(n, p)     → Linear p→d + positions            [B·C, n, d]
      in-patch tokens    x.reshape(n, p)ᵀ    → Linear n→d + positions            [B·C, p, d]
      × e_layers, one attention layer per depth SHARED by both branches and all patch sizes:
          A = softmax(Q Kᵀ / √d_h)   (H heads)       patch-wise [B·C, H, n, n], in-patch [B·C, H, p, p]
          h = LN(h + A V W_o)
      channels fused: mean of the maps over the C channels                      [B, H, n, n], [B, H, p, p]
      up-sampling to points (rows stay distributions):
          N_ij = A_patch[i // p, j // p] / p,   P_ij = A_in[i % p, j % p] / n     [B, H, L, L]

    loss  = mean over patch sizes, layers, heads, points of  L_N + L_P              (Eq. 9, KDD version)
            L_N = KL(N ‖ sg P) + KL(sg P ‖ N),   L_P = KL(P ‖ sg N) + KL(sg N ‖ P)  (Eqs. 7-8; sg = stop-gradient)
    score = the same per point, without the stop-gradients: KL(P ‖ N) + KL(N ‖ P)   [B, L]   (Eq. 10)

**On the loss.** With the sum, the stop-gradients only halve the gradient: for
f = the symmetric KL, f(N, sg P) + f(sg N, P) has the value 2·f(N, P) and the
gradient ∂f/∂N + ∂f/∂P of f(N, P) itself, both views trained towards each
other. `loss()`
keeps the paper's form anyway. The published code (and arXiv v2 of the paper)
uses the *difference* L_P − L_N instead, whose value is identically zero
(DAMO-DI-ML/KDD2023-DCdetector issue #5): one view is pulled towards the
other and the other pushed away, an Anomaly-Transformer-like minimax, and
validation/early stopping see 0 every epoch. We follow the KDD text (the sum):
the loss is positive, symmetric in the two views, and a usable validation
loss. `loss(x) -> (total, task)` returns it twice (it is the only objective).

`forward(x)` returns `x` itself: DCdetector has no reconstruction, and the
loop trains and scores through the `loss` and `score` hooks only (the
default reconstruction error would be 0 everywhere).

Choices where the paper is silent or that differ from its code: the
embedding is a linear map plus fixed sinusoidal positions (the code: a
Conv1d token embedding); each layer updates its tokens with a residual and a
LayerNorm (A V W_o), without feed-forward block; channels are fused by
averaging their attention maps (exactly, in the log domain); losses and
scores are averaged (not summed) over patch sizes and layers (a constant
factor); no softmax over the window is applied to the score (the code
applies one; Eq. 10 has none).

Defaults: `--patch_size 5,10` (`DEFAULT_PATCH_SIZES`; each size must divide
the window `--seq_len`, both divide 100; the paper picks sizes per dataset
for windows of 90-105, e.g. 3,5 or 5,7), `--e_layers 3` (`DEFAULTS`).
`--d_model` and `--n_heads` are the common flags (run.py: 128 and 8); the
paper uses d_model 256 and 1 head.
"""
from __future__ import annotations

import math
from argparse import Namespace

import torch
from torch import nn

DEFAULTS = {"e_layers": 3}
DEFAULT_PATCH_SIZES = "5,10"  # both divide the default window of 100


def parse_patch_sizes(spec, window: int) -> tuple[int, ...]:
    """`--patch_size` ("5,10", an int or a sequence; None = the default) -> sizes, each dividing `window`."""
    if spec is None:
        spec = DEFAULT_PATCH_SIZES
    items = spec.split(",") if isinstance(spec, str) else ([spec] if isinstance(spec, int) else list(spec))
    try:
        sizes = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        raise ValueError(f"--patch_size {spec!r}: expected positive integers separated by commas, e.g. 5,10") from None
    divisors = [d for d in range(1, window + 1) if window % d == 0]
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"--patch_size {spec!r}: expected positive integers separated by commas, e.g. 5,10")
    bad = [s for s in sizes if window % s]
    if bad:
        raise ValueError(f"DCdetector: patch size(s) {', '.join(map(str, bad))} do not divide the window --seq_len "
                         f"{window}; pass --patch_size with divisors of {window} "
                         f"({', '.join(map(str, divisors))}), or a --seq_len that they divide")
    return sizes


def options(args: Namespace) -> dict:
    e_layers = getattr(args, "e_layers", None)
    return {"e_layers": int(e_layers if e_layers is not None else DEFAULTS["e_layers"]),
            "patch_sizes": parse_patch_sizes(getattr(args, "patch_size", None), args.seq_len)}


def sinusoidal_positions(length: int, d: int, device=None) -> torch.Tensor:
    """Fixed positional encoding [length, d] (Vaswani et al., 2017)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


def symmetric_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) along the last axis, from the logs: [..., L, L] -> [..., L]."""
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) along the last axis, from the logs: [..., L, L] -> [..., L]."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def contrastive_terms(log_n: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """L_N + L_P per point (Eqs. 7-9): the two views' KL both ways, each view trained against the other's
    stop-gradient. [B, H, L, L] twice -> [B, H, L]."""
    sn, sp = log_n.detach(), log_p.detach()
    loss_n = kl(log_n, sp) + kl(sp, log_n)
    loss_p = kl(log_p, sn) + kl(sn, log_p)
    return loss_n + loss_p


class AttentionLayer(nn.Module):
    """`forward(h [B', T, d]) -> (LN(h + A V W_o) [B', T, d], log A [B', H, T, T])`."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"--n_heads {n_heads} must divide --d_model {d_model}")
        self.n_heads = n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, h: torch.Tensor):
        B, T, d = h.shape
        H, dh = self.n_heads, d // self.n_heads
        q = self.q(h).reshape(B, T, H, dh).transpose(1, 2)  # [B', H, T, dh]
        k = self.k(h).reshape(B, T, H, dh).transpose(1, 2)
        v = self.v(h).reshape(B, T, H, dh).transpose(1, 2)
        log_a = torch.log_softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [B', H, T, T]
        out = (log_a.exp() @ v).transpose(1, 2).reshape(B, T, d)
        return self.norm(h + self.o(out)), log_a


class Model(nn.Module):
    def __init__(self, args: Namespace) -> None:
        super().__init__()
        opt = options(args)
        self.e_layers, self.patch_sizes = opt["e_layers"], opt["patch_sizes"]
        self.seq_len, self.d_model, self.n_heads = args.seq_len, args.d_model, args.n_heads
        L, d = args.seq_len, args.d_model
        self.embed_patch = nn.ModuleList(nn.Linear(p, d) for p in self.patch_sizes)  # a patch's p values
        self.embed_in = nn.ModuleList(nn.Linear(L // p, d) for p in self.patch_sizes)  # a position's n values
        self.layers = nn.ModuleList(AttentionLayer(d, args.n_heads) for _ in range(self.e_layers))

    @staticmethod
    def setting_tags(args: Namespace) -> list[str]:
        o = options(args)
        return [f"dm{args.d_model}", f"nh{args.n_heads}", f"el{o['e_layers']}",
                "ps" + "-".join(map(str, o["patch_sizes"]))]

    def views(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`x` [B, L, C] -> for each patch size and layer, the log up-sampled patch-wise and in-patch
        associations (log N, log P), each [B, H, L, L] with rows summing to 1."""
        B, L, C = x.shape
        if L != self.seq_len:
            raise ValueError(f"DCdetector was built for windows of {self.seq_len} points, got {L}")
        x = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)  # instance norm
        series = x.transpose(1, 2).reshape(B * C, L)  # channel independence [B·C, L]
        points = torch.arange(L, device=x.device)
        out = []
        for s, p in enumerate(self.patch_sizes):
            n = L // p
            patches = series.reshape(B * C, n, p)  # point l = patch l // p, position l % p
            h_patch = self.embed_patch[s](patches) + sinusoidal_positions(n, self.d_model, x.device)  # [B·C, n, d]
            h_in = self.embed_in[s](patches.transpose(1, 2)) + sinusoidal_positions(p, self.d_model, x.device)  # [B·C, p, d]
            for layer in self.layers:
                h_patch, log_a_patch = layer(h_patch)  # [B·C, H, n, n]
                h_in, log_a_in = layer(h_in)  # [B·C, H, p, p]
                # channels fused: log of the mean over C of the maps (exact)
                log_a_patch = torch.logsumexp(log_a_patch.reshape(B, C, -1, n, n), 1) - math.log(C)  # [B, H, n, n]
                log_a_in = torch.logsumexp(log_a_in.reshape(B, C, -1, p, p), 1) - math.log(C)  # [B, H, p, p]
                rows_patch, rows_in = points // p, points % p
                log_n = log_a_patch[:, :, rows_patch][:, :, :, rows_patch] - math.log(p)  # [B, H, L, L]
                log_p = log_a_in[:, :, rows_in][:, :, :, rows_in] - math.log(n)  # [B, H, L, L]
                out.append((log_n, log_p))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # no reconstruction: the loop uses the loss and score hooks

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(L, L)`: the contrastive loss (L_N + L_P, averaged over points, heads, layers and patch sizes)."""
        terms = [contrastive_terms(log_n, log_p).mean() for log_n, log_p in self.views(x)]
        total = torch.stack(terms).mean()
        return total, total

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-point discrepancy of the two views [B, L]: KL(P‖N) + KL(N‖P), mean over heads, layers, sizes."""
        per = [symmetric_kl(log_n, log_p).mean(1) for log_n, log_p in self.views(x)]  # each [B, L]
        return torch.stack(per).mean(0)

    def describe(self) -> dict:
        return {"architecture": "DCdetector (Yang et al., KDD 2023): channel-independent patching, dual "
                                "(patch-wise / in-patch) attention, contrastive KL of the two views, no reconstruction",
                "patch_sizes": list(self.patch_sizes), "e_layers": self.e_layers, "d_model": self.d_model,
                "n_heads": self.n_heads, "pretrained": False}
