"""The registered proxies. Each docstring gives the definition and the paper.

All run on an untrained model with BatchNorm in train mode (batch statistics), except synflow,
which is data-free by construction.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from torch import nn

from search_spaces.stats import count_macs

from ._base import ProxyContext, register_proxy
from ._hooks import (
    forward_hooks,
    on_activation_inputs,
    per_sample,
    strip_batch_norm,
    weighted_layers,
)


@register_proxy(
    "naswot",
    description="NASWOT (Mellor et al., ICML 2021): log|det K|, K = Hamming-similarity kernel of "
    "the samples' binary activation codes.",
)
def naswot(ctx: ProxyContext) -> float:
    n = ctx.batch.inputs.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)
    for code in ctx.binary_codes():
        # units - Hamming distance = c c^T + (1-c)(1-c)^T = 2 c c^T - r_i - r_j + units;
        # float32 is exact here: every entry is an integer below 2^24.
        c = code.float()
        both_on = c @ c.T
        on = c.sum(1)
        kernel += (2 * both_on - on[:, None] - on[None, :] + c.shape[1]).double()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


@register_proxy(
    "swap",
    description="SWAP (Peng et al., ICLR 2024): number of distinct sample-wise activation "
    "patterns, i.e. distinct binary columns of the (samples x activation units) matrix.",
)
def swap(ctx: ProxyContext) -> float:
    n = ctx.batch.inputs.shape[0]
    if n < 32:
        # A unit's pattern has n bits: with millions of units, 2^n distinct patterns saturate
        # (batch 16: every SwiftFormer candidate scores 65,536, measured).
        warnings.warn(f"SWAP with batch {n} saturates at 2^{n} patterns; use batch >= 32.",
                      stacklevel=2)
    packed = [
        np.packbits(code.T.numpy(), axis=1) for code in ctx.binary_codes()
    ]  # one row of bytes per unit: its on/off pattern over the samples
    rows = np.concatenate(packed, axis=0)
    unique = np.unique(np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))))
    return float(unique.shape[0])


@register_proxy(
    "synflow",
    description="SynFlow (Tanaka et al., NeurIPS 2020): log of sum |theta * dR/dtheta| with "
    "R = sum of the output of the BN-free, absolute-weight network on an all-ones input "
    "(float64).",
    needs_backward=True,
)
def synflow(ctx: ProxyContext) -> float:
    net = strip_batch_norm(copy.deepcopy(ctx.model)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *ctx.batch.inputs.shape[1:]), dtype=torch.float64)
    net.zero_grad()
    torch.sum(net(ones)).backward()
    total = sum(
        float((p.detach() * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None
    )
    return math.log(total) if total > 0 else float("-inf")


@register_proxy(
    "grad_norm",
    description="Gradient norm (Abdelfattah et al., ICLR 2021): sum over weighted layers of "
    "||dL/dW||_2 for cross-entropy on random labels.",
    needs_backward=True,
)
def grad_norm(ctx: ProxyContext) -> float:
    grads = ctx.weight_gradients()
    weights = {id(layer.weight) for layer in weighted_layers(ctx.model)}
    return float(sum(
        float(grads[name].norm())
        for name, p in ctx.model.named_parameters() if id(p) in weights and name in grads
    ))


@register_proxy(
    "meco",
    description="MeCo (Jiang et al., NeurIPS 2023): sum over modules of the minimum eigenvalue "
    "of the channel correlation matrix of one sample's feature map.",
)
def meco(ctx: ProxyContext) -> float:
    model = ctx.model
    values: list[float] = []

    def hook(_m: nn.Module, _args: object, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() < 3:
            return
        fea = output[0].detach().reshape(output.shape[1], -1).double()
        if min(fea.shape) < 2:  # one channel or a 1x1 map: no correlation (the authors add 0)
            return
        corr = torch.nan_to_num(torch.corrcoef(fea), nan=0.0, posinf=0.0, neginf=0.0)
        values.append(float(torch.linalg.eigvalsh(corr)[0]))

    # Every module, containers included, as in the authors' code: block outputs count too.
    model.train()
    with forward_hooks(model.modules(), hook), torch.no_grad():
        model(ctx.batch.inputs[:1])
    return float(sum(values))


# -- free baselines ---------------------------------------------------------------------------
@register_proxy("params", description="Number of parameters.", free=True)
def params(ctx: ProxyContext) -> float:
    return float(sum(p.numel() for p in ctx.model.parameters()))


@register_proxy("macs", description="Multiply-accumulates of one forward pass.", free=True)
def macs(ctx: ProxyContext) -> float:
    return float(count_macs(ctx.model, (1, *ctx.batch.inputs.shape[1:])))


@register_proxy(
    "depth",
    description="Number of weighted layers (conv/linear) executed in one forward pass.",
    free=True,
)
def depth(ctx: ProxyContext) -> float:
    model, calls = ctx.model, 0

    def hook(*_: object) -> None:
        nonlocal calls
        calls += 1

    model.eval()
    with forward_hooks(weighted_layers(model), hook), torch.no_grad():
        model(ctx.batch.inputs[:1])
    return float(calls)


@register_proxy(
    "act_units",
    description="Number of activation (ReLU/GELU/...) output units for one sample.",
    free=True,
)
def act_units(ctx: ProxyContext) -> float:
    # Two samples, so that activations on tables shared by every sample can be told apart
    # (see per_sample) and are not counted, as in SWAP and NASWOT.
    model, units = ctx.model, 0
    inputs = ctx.batch.inputs[:2]

    def count(x: torch.Tensor) -> None:
        nonlocal units
        per = per_sample(x, inputs.shape[0])
        if per is not None:
            units += per.shape[1]

    model.eval()
    with on_activation_inputs(model, count), torch.no_grad():
        model(inputs)
    return float(units)
