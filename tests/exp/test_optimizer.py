"""exp.exp_basic.make_optimizer: PyTorch's fused Adam where the parameters allow it, the same update as Adam's."""
from __future__ import annotations

import torch
import torch.nn as nn

from exp.exp_basic import make_optimizer


def test_fused_adam_takes_adams_steps():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(37, 5)), nn.Parameter(torch.randn(11))]
    reference = [nn.Parameter(p.detach().clone()) for p in params]
    fused, plain = make_optimizer(params, 1e-2), torch.optim.Adam(reference, lr=1e-2)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    for _ in range(5):
        for group in (params, reference):
            for p, g in zip(group, (torch.sin(params[0].detach() * 3), torch.cos(params[1].detach()))):
                p.grad = g.clone()
        fused.step()
        plain.step()
    for a, b in zip(params, reference):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    plain.load_state_dict(fused.state_dict())  # the same state dict: a resumed run may switch


def test_parameters_it_cannot_fuse_get_the_default_adam():
    opt = make_optimizer([nn.Parameter(torch.zeros(3, device="meta"))], 1e-3)
    assert not opt.defaults["fused"]
