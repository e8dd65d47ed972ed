"""Finding activations and weighted layers in any model (CNN, transformer or hybrid)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

# timm defines its own activation classes (timm.layers.activations); match them by name too.
_ACTIVATION_TYPES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.Mish, nn.ELU, nn.PReLU,
    nn.Hardtanh, nn.SELU, nn.CELU,
)
_ACTIVATION_NAMES = {
    "relu", "relu6", "gelu", "gelutanh", "quickgelu", "silu", "swish", "hardswish", "hardswishme",
    "swishme", "leakyrelu", "mish", "mishme", "elu", "prelu", "hardtanh", "selu", "celu", "star",
}


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, _ACTIVATION_TYPES) or type(module).__name__.lower() in (
        _ACTIVATION_NAMES
    )


def activation_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if is_activation(m)]


@contextmanager
def on_activation_inputs(
    model: nn.Module, callback: Callable[[torch.Tensor], None]
) -> Iterator[int]:
    """Call ``callback(pre_activation)`` for each activation call during the block.

    A pre-hook sees the input before an in-place activation overwrites it. Binarising the
    pre-activation's sign is the ReLU pattern for ReLU and the natural pattern for GELU/SiLU,
    whose gates switch at 0 too. Yields the number of hooked modules.
    """
    modules = activation_modules(model)
    handles = [
        m.register_forward_pre_hook(lambda _m, args: callback(args[0].detach()))
        for m in modules
    ]
    try:
        yield len(modules)
    finally:
        for h in handles:
            h.remove()


def per_sample(x: torch.Tensor, n: int) -> torch.Tensor | None:
    """``x`` as ``(n, units)`` when its leading axis holds the batch's ``n`` samples, or ``n``
    sample-major groups (window attention runs on ``(n * windows, ...)``); ``None`` when it does
    not, i.e. an activation that runs on a table shared by every sample (a relative-position
    MLP), which carries no information about the inputs."""
    if x.dim() == 0 or x.shape[0] % n:
        return None
    return x.reshape(n, -1)


@contextmanager
def forward_hooks(modules: Iterable[nn.Module], hook: Callable[..., None]) -> Iterator[None]:
    """Register ``hook`` as a forward hook on each module for the duration of the block."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)]


def strip_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm by an identity, in place (synflow's data-free convention)."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            strip_batch_norm(child)
    return model
