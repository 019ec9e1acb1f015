"""CrossAlign's options, declared once (nanoGPT's `GPTConfig` style): run.py turns this dataclass into
its CrossAlign flag groups, `models/CrossAlign.py` reads it back with `from_args`, so each default
exists in one place, with its source. This module imports nothing heavy, so `run.py --help` stays fast.

Sources: "paper" (the paper's text), "published code" (github xf530xf/LLMs-Mamba d9721c5), "Mamba"
(Gu & Dao, 2023, the `mamba_ssm` defaults) or "ours" (where both are silent or we chose otherwise;
the README's model section lists where the published code differs, and `--preset published`
reproduces it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _opt(default: Any, help: str, source: str, group: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "source": source, "group": group, "choices": choices})


LLM = "model: CrossAlign LLM branch"
FREQ = "model: CrossAlign frequency branch"


@dataclass(frozen=True)
class CrossAlignConfig:
    llm: str = _opt("gpt2", "backbone: gpt2, minilm, smollm2, a Hugging Face id, a local folder, or none", "paper",
                    LLM)
    llm_layers: int = _opt(6, "keep the first N blocks of the LLM",
                           "ours (GPT4TS's 6 GPT-2 blocks); published code: all 12", LLM)
    llm_init: str = _opt("pretrained", "pretrained weights, or random (same architecture, no download)", "paper", LLM,
                         ("pretrained", "random"))
    lora_r: int = _opt(8, "LoRA rank", "published code", LLM)
    lora_alpha: int = _opt(16, "LoRA alpha", "published code", LLM)
    lora_dropout: float = _opt(0.1, "LoRA dropout", "published code", LLM)
    pmd: int = _opt(1, "Principal Memory Distillation on/off", "paper", LLM, (0, 1))
    pmd_size: int = _opt(500, "principal memory tokens K (capped at d)", "published code (wte_pca_500)", LLM)
    pmd_rounds: int = _opt(1, "cross-attention rounds into the memory", "ours; published code: 3", LLM)
    pmd_query: str = _opt("updated", "retrieval query per round: the running tokens (updated) or the time "
                                     "embedding every round (fixed)", "ours; published code: fixed", LLM,
                          ("updated", "fixed"))
    cons_weight: float = _opt(0.1, "weight of the PMD consistency loss", "ours", LLM)
    d_ssm: int = _opt(128, "Mamba model width", "ours", FREQ)
    ssm_layers: int = _opt(2, "Mamba blocks", "ours", FREQ)
    d_state: int = _opt(16, "Mamba state size", "Mamba", FREQ)
    d_conv: int = _opt(4, "Mamba convolution width", "Mamba", FREQ)
    expand: int = _opt(2, "Mamba expansion factor", "Mamba", FREQ)
    fft: int = _opt(1, "0: keep the Mamba output in time (ablation)", "paper", FREQ, (0, 1))
    freq_branch: int = _opt(1, "0: drop the Mamba/FFT branch and the cross-attention (ablation)", "paper", FREQ,
                            (0, 1))
    ssm_backend: str = _opt("auto", "selective scan: auto = mamba_ssm's CUDA kernels on CUDA, our C kernel on the "
                            "CPU (built on first use; without a C compiler, or in float64, the PyTorch scan); "
                            "cuda = require mamba_ssm; torch = always our PyTorch scan", "ours", FREQ,
                            ("auto", "cuda", "torch"))

    @classmethod
    def from_args(cls, args) -> "CrossAlignConfig":
        """The options in `args` (a run.py namespace; a missing or None value takes the default)."""
        given = {f.name: getattr(args, f.name, None) for f in fields(cls)}
        return cls(**{k: v for k, v in given.items() if v is not None})


def add_flags(parser) -> None:
    """One argparse flag per field, in its group; the help names the default's source."""
    groups: dict[str, Any] = {}
    for f in fields(CrossAlignConfig):
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        group.add_argument(f"--{f.name}", type=type(f.default), default=f.default, choices=meta["choices"],
                           help=f"{meta['help']} [source: {meta['source']}]")


# presets: defaults replaced before parsing, so flags given on the command line still win
PRESETS = {
    "published": {
        "all": {"llm": "gpt2", "llm_layers": 12, "pmd_rounds": 3, "pmd_query": "fixed", "pmd_size": 500},
        "SMD": {"step": 100},  # its SMD loader trains on windows every 100 points (the others every point)
    },
}


def preset_defaults(name: str, data: str | None) -> dict:
    """The flag defaults of preset `name` for dataset `data`."""
    if name not in PRESETS:
        raise ValueError(f"unknown --preset {name!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return {**preset["all"], **preset.get(str(data), {})}
