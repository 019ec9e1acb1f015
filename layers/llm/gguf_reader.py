"""Read a Llama-architecture GGUF file (llama.cpp's format) as a transformers ``LlamaConfig`` and state dict.

Only the tensors of the kept blocks are dequantised, so a 2-block backbone
never materialises the other 28 blocks of SmolLM2. The result equals
transformers' own GGUF converter on the same blocks (``tests/test_llm.py -m slow``).
"""
from __future__ import annotations

import torch

__all__ = ["llama_config", "llama_state_dict", "unpermute_rope"]

# llama.cpp tensor names -> LlamaModel state-dict names
_GLOBAL_TENSORS = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight"}
_BLOCK_TENSORS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                  "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                  "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                  "ffn_down": "mlp.down_proj"}


def _value(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if value.dtype.kind == "u" and value.dtype.itemsize == 1:  # strings are stored as uint8 arrays
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


def llama_config(reader, n_layers: int | None):
    """``(LlamaConfig, full depth)`` from a ``gguf.GGUFReader``'s metadata (llama.cpp key names).

    ``n_layers=None`` keeps every block in the configuration.
    """
    from transformers import LlamaConfig
    arch = _value(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF backbones must be Llama-architecture; this file is {arch!r}")
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    total = int(_value(reader, "llama.block_count"))
    n_heads = int(_value(reader, "llama.attention.head_count"))
    cfg = LlamaConfig(
        vocab_size=int(emb.shape[1]),  # ggml order: [d, V]
        hidden_size=int(_value(reader, "llama.embedding_length")),
        intermediate_size=int(_value(reader, "llama.feed_forward_length")),
        num_hidden_layers=total if n_layers is None else n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=int(_value(reader, "llama.attention.head_count_kv") or n_heads),
        rms_norm_eps=float(_value(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(_value(reader, "llama.rope.freq_base") or 10000.0),
        max_position_embeddings=int(_value(reader, "llama.context_length")),
        tie_word_embeddings=True,
    )
    return cfg, total


def unpermute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's conversion-time reordering of q/k rows (interleaved -> half-split rotary)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_state_dict(reader, cfg, n_layers: int) -> dict[str, torch.Tensor]:
    """Dequantise only the tensors of the first `n_layers` blocks (plus embedding and final norm)."""
    from gguf.quants import dequantize
    names = dict(_GLOBAL_TENSORS)
    for i in range(n_layers):
        for src, dst in _BLOCK_TENSORS.items():
            names[f"blk.{i}.{src}.weight"] = f"layers.{i}.{dst}.weight"
    state = {}
    for t in reader.tensors:
        if t.name not in names:
            continue
        w = torch.from_numpy(dequantize(t.data, t.tensor_type).astype("float32", copy=False).copy())
        w = w.reshape([int(s) for s in reversed(t.shape)])  # ggml lists the fastest axis first
        if t.name.endswith("attn_q.weight"):
            w = unpermute_rope(w, cfg.num_attention_heads)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute_rope(w, cfg.num_key_value_heads)
        state[names[t.name]] = w
    missing = sorted(set(names.values()) - set(state))
    if missing:
        raise ValueError(f"GGUF file lacks tensors {missing[:4]}...")
    return state
