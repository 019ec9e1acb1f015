"""GPT4TS (models/GPT4TS.py) and the plain-backbone option of layers.llm.load_backbone it uses: shapes, exactly
the norms, positions and in/out layers train, the frozen weights stay, and a short Synthetic run on MiniLM."""
from __future__ import annotations

import json
import os

import pytest
import torch

import run
from layers.llm import load_backbone
from models.GPT4TS import Model
from test_pipeline import TINY, only_setting

pytestmark = pytest.mark.usefixtures("one_thread")


def make_args(*flags: str, C: int = 3, L: int = 24):
    args = run.build_parser().parse_args(list(flags))
    args.enc_in, args.seq_len = C, L
    return args


def tiny(folder: str, C: int = 3, L: int = 24) -> Model:
    torch.manual_seed(0)
    return Model(make_args("--llm", folder, "--llm_init", "random", "--llm_layers", "2", C=C, L=L))


def _is_trained(name: str) -> bool:
    """The GPT4TS rule on GPT-2 names: layer norms (ln_1, ln_2, ln_f), positions (wpe), the input and output layers."""
    return any(k in name for k in (".ln_", "wpe", "embed.", "head."))


@pytest.mark.parametrize("L,C", [(8, 1), (24, 3), (100, 7)])
def test_shapes(tiny_gpt2, L, C):
    assert tiny(tiny_gpt2, C=C, L=L)(torch.randn(2, L, C)).shape == (2, L, C)


def test_window_longer_than_the_position_table_is_named(tiny_gpt2):
    with pytest.raises(ValueError, match="position embeddings"):
        tiny(tiny_gpt2, L=200)  # the tiny GPT-2 has 128 positions


def test_exactly_norms_positions_and_in_out_layers_train(tiny_gpt2):
    model = tiny(tiny_gpt2)
    names = dict(model.named_parameters())
    assert not [n for n in names if "lora" in n]  # no adapters
    trained = {n for n, p in names.items() if p.requires_grad}
    assert trained == {n for n in names if _is_trained(n)}
    assert any("attn" in n for n in names) and any("mlp" in n for n in names)
    assert {n.split(".")[-2] for n in trained if "ln_" in n} == {"ln_1", "ln_2", "ln_f"}
    before = {n: p.detach().clone() for n, p in names.items()}
    opt = torch.optim.Adam([p for p in names.values() if p.requires_grad], lr=1e-2)
    x = torch.randn(4, 24, 3)
    for _ in range(2):
        opt.zero_grad()
        torch.mean((model(x) - x) ** 2).backward()
        opt.step()
    moved = {n for n, p in names.items() if not torch.equal(p, before[n])}
    assert moved == trained  # every trainable weight moved, no frozen one did


def test_minilm_norms_and_positions_train_and_describe_says_so():
    model = Model(make_args("--llm", "minilm", "--llm_layers", "1", C=2, L=16))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "backbone.model.embeddings.position_embeddings.weight" in trained
    assert "backbone.model.embeddings.LayerNorm.weight" in trained
    assert not [n for n in trained if "attention.self" in n or "intermediate" in n]
    info = model.describe()
    assert info["backbone"] == "minilm" and info["pretrained"] is True and info["llm_layers"] == 1
    assert info["llm_lora"] is False and info["llm_trainable_kinds"] == ["norm", "position"]


def test_default_backbone_is_unchanged_by_the_new_options(tiny_gpt2):
    """CrossAlign's call (LoRA on, nothing extra) still trains only LoRA; trainable kinds add to it."""
    plain = load_backbone(tiny_gpt2, 2, "random")
    assert all("lora" in n for n, p in plain.named_parameters() if p.requires_grad)
    assert "llm_lora" not in plain.describe()
    mixed = load_backbone(tiny_gpt2, 2, "random", trainable=("position",))
    assert {n for n, p in mixed.named_parameters() if p.requires_grad and "lora" not in n} == \
        {"model.base_model.model.wpe.weight"}
    with pytest.raises(ValueError, match="unknown"):
        load_backbone(tiny_gpt2, 1, "random", lora=False, trainable=("attention",))


def test_setting_tags_name_backbone_init_and_layers(tiny_gpt2):
    assert Model.setting_tags(make_args("--llm", "minilm", "--llm_layers", "1")) == ["llmminilm-pretrained-l1"]
    assert Model.setting_tags(make_args()) == ["llmgpt2-pretrained-l6"]  # CrossAlign's defaults: GPT-2, 6 blocks


def test_short_synthetic_run_on_minilm_ranks_anomalies(run_cli):
    """One epoch of 15 steps on 1 pretrained MiniLM block. Measured AUC-ROC 0.625 / 0.622 for seeds 2024 / 1
    (LinearAE on TINY: 0.62; chance 0.5)."""
    flags = list(TINY)
    flags[flags.index("LinearAE")] = "GPT4TS"
    flags[flags.index("--train_epochs") + 1] = "1"
    code, results = run_cli(*flags, "--llm", "minilm", "--llm_layers", "1", "--threads", "1")
    assert code == 0
    folder = only_setting(results)
    assert "_llmminilm-pretrained-l1_" in os.path.basename(folder)
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert payload["model"]["backbone"] == "minilm"
    assert payload["metrics"]["threshold_free"]["auc_roc"] > 0.55, payload["metrics"]["threshold_free"]
