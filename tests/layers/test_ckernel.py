"""layers/ckernel.py: what every C kernel's first-call check shares (run once per process, in float32)."""
from __future__ import annotations

import pytest
import torch

from conftest import require_c_kernel
from layers import conv_kernel, fast_ops, mamba, scan_kernel

# every C kernel of layers/csrc: its loader and its first-call check
KERNEL_CHECKS = {
    "dropout": (fast_ops.KERNEL, fast_ops.kernel_error),
    "gelu": (fast_ops.GELU_KERNEL, fast_ops.gelu_kernel_error),
    "attention": (fast_ops.ATTENTION_KERNEL, fast_ops.attention_kernel_error),
    "lora": (fast_ops.LORA_KERNEL, fast_ops.lora_kernel_error),
    "scan": (scan_kernel.KERNEL, mamba.cpu_kernel_error),
    "conv": (conv_kernel.KERNEL, mamba.conv_kernel_error),
}


@pytest.mark.parametrize("name", sorted(KERNEL_CHECKS))
def test_a_kernels_first_check_inside_bf16_autocast_still_passes(name, request):
    """`--bf16 1` training makes the first call to each kernel inside CPU autocast: its check must compare
    float32 with float32 all the same. Under autocast the PyTorch side's matmuls ran in bf16 (4e-3 to 6e-3 off),
    which turned the scan and attention kernels off for the whole run, and the LoRA check aborted the process."""
    loader, check = KERNEL_CHECKS[name]
    require_c_kernel(name, check)
    request.addfinalizer(loader.reset)  # later tests check again outside autocast
    loader.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert check() is None


@pytest.mark.parametrize("name", sorted(KERNEL_CHECKS))
def test_a_kernels_first_check_inside_inference_mode_still_passes(name, request):
    """Scoring runs under torch.inference_mode(), and the checks need gradients."""
    loader, check = KERNEL_CHECKS[name]
    require_c_kernel(name, check)
    request.addfinalizer(loader.reset)
    loader.reset()
    with torch.inference_mode():
        assert check() is None
