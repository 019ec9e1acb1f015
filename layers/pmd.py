"""Principal Memory Distillation (PMD): a compact memory of the LLM's vocabulary that time tokens query.

The principal memory ``P [K, d]`` summarises the backbone's token-embedding
matrix ``W_te [V, d]`` by PCA over the *vocabulary axis*: treat ``W_te^T``
as ``d`` samples of ``V`` features, fit ``K`` principal components and keep
the sample scores ``[d, K]``, transposed to ``K`` memory tokens of size ``d``
(the orientation of the published CrossAlign/CALF code; Liu et al., "CALF:
Aligning LLMs for Time Series Forecasting via Cross-modal Fine-Tuning",
2024, build the same memory). Each memory token is a direction in the LLM's
embedding space mixing many words, ranked by how much vocabulary variance it
explains. There are at most ``d`` such scores, so ``K`` is capped at ``d``.

PCA here is exact, deterministic and cheap: the ``d x d`` Gram matrix of the
centred samples, accumulated in float64 over chunks of the vocabulary, then a
symmetric eigendecomposition. Scores are ``U * sqrt(eigenvalue)`` (=
``U S`` of the SVD, what ``sklearn.decomposition.PCA.fit_transform``
returns); each component's sign is fixed so that its largest-magnitude score
is positive.

The memory is cached on disk (``$CROSSALIGN_CACHE``, default
``./.cache/crossalign``) keyed by backbone name, init, a SHA-256 of ``W_te``
and ``K``; written atomically. In the model it is a registered buffer, so a
checkpoint carries it and loading never needs the backbone's vocabulary.

``MemoryRetrieval``: queries from time tokens, keys/values from ``P``, for
``rounds`` rounds, each ``x <- LayerNorm(x + MHA(x, P, P))``.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings

import torch
import torch.nn as nn

from layers.attention import MultiHeadAttention
from utils.io import save_torch

__all__ = ["principal_memory", "cache_dir", "load_or_build_memory", "MemoryRetrieval"]

_CHUNK = 8192  # vocabulary columns per Gram chunk: bounds the float64 working set to d x 8192


def principal_memory(token_embedding: torch.Tensor, k: int) -> torch.Tensor:
    """PCA scores of ``W_te^T``: ``[V, d]`` -> ``[K, d]`` (row i = component i's scores over the d dims).

    Equals ``PCA(k).fit_transform(W_te.T).T`` of scikit-learn up to each row's sign.
    Raises ValueError if ``k`` is not in ``[1, d]`` (callers cap it first) or the matrix is degenerate.
    """
    if token_embedding.dim() != 2:
        raise ValueError(f"token embedding must be [V, d], got {tuple(token_embedding.shape)}")
    vocab, d = token_embedding.shape
    if not 1 <= k <= d:
        raise ValueError(f"principal memory size must be in [1, d={d}], got {k}")
    w = token_embedding.detach().to("cpu", torch.float64)  # [V, d]; samples are its d columns
    mean = w.mean(dim=1)  # [V]: the mean over the d samples of each vocabulary feature
    gram = torch.zeros(d, d, dtype=torch.float64)
    for start in range(0, vocab, _CHUNK):
        xc = w[start:start + _CHUNK] - mean[start:start + _CHUNK, None]  # [chunk, d]
        gram += xc.T @ xc  # [d, d]
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    order = torch.argsort(evals, descending=True)[:k]
    evals, u = evals[order].clamp_min(0.0), evecs[:, order]  # [K], [d, K]
    scores = u * evals.sqrt()  # [d, K] == U S
    signs = torch.sign(scores.gather(0, scores.abs().argmax(dim=0, keepdim=True)))  # [1, K]
    signs[signs == 0] = 1.0
    return (scores * signs).T.contiguous().to(torch.float32)  # [K, d]


def cache_dir() -> str:
    """``$CROSSALIGN_CACHE`` or ``./.cache/crossalign`` (git-ignored)."""
    return os.environ.get("CROSSALIGN_CACHE") or os.path.join(".", ".cache", "crossalign")


def _weights_digest(token_embedding: torch.Tensor) -> str:
    data = token_embedding.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(data.tobytes()).hexdigest()


def load_or_build_memory(token_embedding: torch.Tensor, k: int, backbone: str, init: str) -> tuple[torch.Tensor, dict]:
    """The principal memory ``[min(k, d), d]``, from the disk cache or computed (then cached).

    ``k > d`` is capped at ``d`` with one info line. Returns ``(memory, info)``;
    ``info`` records the effective size, cache path and whether it was a cache hit.
    A corrupt or mismatching cache file is recomputed and overwritten.
    """
    if k < 1:
        raise ValueError(f"--pmd_size must be >= 1, got {k}")
    d = token_embedding.shape[1]
    if k > d:
        # expected, not a mistake: the default K=500 (the published code's) exceeds e.g. MiniLM's d=384
        print(f"info: principal memory capped at d={d} tokens (--pmd_size {k}; PCA of d-wide embeddings has at "
              f"most d components)")
        k = d
    digest = _weights_digest(token_embedding)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone).strip("_") or "backbone"
    path = os.path.join(cache_dir(), f"pmd-{safe}-{init}-{digest[:16]}-K{k}.pt")
    info = {"pmd_size": k, "pmd_cache": os.path.abspath(path), "pmd_weights_sha256": digest}
    if os.path.exists(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("sha256") == digest and tuple(blob["memory"].shape) == (k, d):
                return blob["memory"], {**info, "pmd_cache_hit": True}
        except Exception as err:  # unreadable file: recompute below
            warnings.warn(f"ignoring unreadable principal-memory cache {path}: {err}")
    memory = principal_memory(token_embedding, k)
    # atomic: readers see the old file or the complete new one; mode as open() gives it (the cache may be shared)
    save_torch(path, {"memory": memory, "sha256": digest, "backbone": backbone, "init": init, "k": k})
    return memory, {**info, "pmd_cache_hit": False}


class MemoryRetrieval(nn.Module):
    """Time tokens retrieve from the principal memory by cross-attention.

    ``forward(x [B, T, d]) -> [B, T, d]``: ``rounds`` times
    ``x <- LayerNorm(x + MHA(q, k=P, v=P))`` with ``q = x`` (``fixed_query=False``)
    or ``q`` = the input tokens in every round (``fixed_query=True``, as the
    published code's ``Encoder_PCA``). ``P [K, d]`` is the registered buffer
    ``memory`` (saved in the state_dict, never trained).
    """

    def __init__(self, memory: torch.Tensor, n_heads: int, rounds: int = 1, dropout: float = 0.1,
                 fixed_query: bool = False) -> None:
        super().__init__()
        if rounds < 1:
            raise ValueError(f"--pmd_rounds must be >= 1, got {rounds}")
        d = memory.shape[1]
        self.register_buffer("memory", memory.clone(), persistent=True)  # [K, d]
        self.attn = nn.ModuleList(MultiHeadAttention(d, n_heads, dropout) for _ in range(rounds))
        self.norm = nn.ModuleList(nn.LayerNorm(d) for _ in range(rounds))
        self.fixed_query = fixed_query

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.memory.to(x.dtype)  # [K, d], shared by the batch: K/V projected once
        query = x
        for attn, norm in zip(self.attn, self.norm):
            x = norm(x + attn(query if self.fixed_query else x, mem))  # [B, T, d]
        return x
