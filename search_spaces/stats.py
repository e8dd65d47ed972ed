"""Size of an architecture: parameters and multiply-accumulates, without running real math.

The model is built on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic) and traced
once under ``FlopCounterMode``, which counts the FLOPs of convolutions and matrix products.
MACs = FLOPs / 2 (counting one multiply-add as one MAC, as papers and timm do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .arch import ArchConfig
from .model import build_model


@dataclass(frozen=True)
class ArchStats:
    params: int  # trainable parameters, classifier and distillation heads included
    macs: int  # multiply-accumulates of one forward pass at the arch's resolution, batch 1

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def macs_g(self) -> float:
        return self.macs / 1e9


def count_macs(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass of ``model`` (any module) on an input of ``input_shape``."""
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    was_training = model.training
    # The counter's module tracker hooks every input that requires grad and asserts it has a
    # grad_fn; a parameter passed into a submodule (PiT's class token) has none, so count with
    # requires_grad off, as no_grad would have it.
    requires = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in requires:
            p.requires_grad_(False)
        with counter, torch.no_grad():
            model(torch.empty(input_shape, device=device))
    finally:
        for p, flag in requires:
            p.requires_grad_(flag)
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def arch_stats(arch: ArchConfig, *, num_classes: int = 1000) -> ArchStats:
    """Parameters and MACs of ``arch`` (about 0.1-0.2 s, independent of model size)."""
    with torch.device("meta"):  # shapes only: no weight init (slow on meta, meaningless)
        model = build_model(arch, num_classes=num_classes, init_weights=False)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (1, 3, arch.resolution, arch.resolution))
    return ArchStats(params=params, macs=macs)
