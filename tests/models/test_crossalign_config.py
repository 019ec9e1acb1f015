"""CrossAlign's options declared once: the flags come from the dataclass, presets, setting tags, and the
published code's fixed-query memory retrieval."""
from __future__ import annotations

from dataclasses import fields

import torch

import run
from layers.pmd import MemoryRetrieval
from models.CrossAlign import Model
from models.crossalign_config import CrossAlignConfig


def test_flags_are_the_dataclass():
    args = run.build_parser().parse_args([])
    assert CrossAlignConfig.from_args(args) == CrossAlignConfig()
    for f in fields(CrossAlignConfig):
        assert getattr(args, f.name) == f.default and f.metadata["source"]


def test_published_preset_and_explicit_flags_win():
    args = run.parse_args(["--preset", "published", "--data", "SMD"])
    assert (args.llm_layers, args.pmd_rounds, args.pmd_query, args.step) == (12, 3, "fixed", 100)
    args = run.parse_args(["--preset", "published", "--data", "MSL", "--llm_layers", "2"])
    assert (args.llm_layers, args.pmd_rounds, args.step) == (2, 3, 1)
    assert run.parse_args([]).llm_layers == 6


def test_setting_tags_name_every_changed_option():
    base = Model.setting_tags(run.build_parser().parse_args([]))
    assert base == ["llmgpt2-pretrained-l6", "pmd1", "fb1", "fft1", "ssm2"]
    changed = Model.setting_tags(run.parse_args(["--preset", "published", "--data", "SMD"]))
    assert changed[0] == "llmgpt2-pretrained-l12" and "pmd_rounds-3" in changed and "pmd_query-fixed" in changed


def test_fixed_query_retrieval_is_the_published_recursion(one_thread):
    torch.manual_seed(0)
    memory = torch.randn(7, 16)
    fixed = MemoryRetrieval(memory, n_heads=4, rounds=3, dropout=0.0, fixed_query=True).eval()
    updated = MemoryRetrieval(memory, n_heads=4, rounds=3, dropout=0.0).eval()
    updated.load_state_dict(fixed.state_dict())
    t = torch.randn(2, 5, 16)
    x = t
    for attn, norm in zip(fixed.attn, fixed.norm):  # x_{k+1} = LN(x_k + MHA(q=t, k=v=P))
        x = norm(x + attn(t, memory))
    assert torch.allclose(fixed(t), x, atol=1e-6)
    assert not torch.allclose(updated(t), x, atol=1e-4)  # the queries differ from round 2 on
    one = MemoryRetrieval(memory, n_heads=4, rounds=1, dropout=0.0, fixed_query=True).eval()
    other = MemoryRetrieval(memory, n_heads=4, rounds=1, dropout=0.0).eval()
    other.load_state_dict(one.state_dict())
    assert torch.allclose(one(t), other(t))  # one round: the same thing
