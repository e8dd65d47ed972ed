"""The one place that turns an :class:`ArchConfig` into a PyTorch model.

:class:`SwiftFormerNAS` subclasses timm's ``SwiftFormer`` and reuses its blocks, so it keeps timm's
whole interface (``forward_features``, ``forward_head``, ``forward_intermediates``,
``reset_classifier``, distillation head, ...) and its state_dict key names (``stem.*``,
``stages.{i}.downsample.*``, ``stages.{i}.blocks.{j}.*``, ``norm``, ``head``, ``head_dist``).
Only the stage construction differs: each stage has its own MLP ratio, any set of blocks may
use attention, and an attention block's token mixer is SwiftFormer's additive attention or one of
timm's own self-attentions (``vision_transformer.Attention``, MobileViTv2's
``LinearSelfAttention``) over the stage's tokens. For the presets the result is
weight-compatible with timm's models.
"""

from __future__ import annotations

from typing import Any

from . import _torchvision_compat

_torchvision_compat.ensure_torchvision_importable()

import torch  # noqa: E402
from timm.layers import Linear  # noqa: E402
from timm.models.mobilevit import LinearSelfAttention  # noqa: E402
from timm.models.swiftformer import (  # noqa: E402
    Block,
    ConvEncoder,
    Embedding,
    Stage,
    SwiftFormer,
)
from timm.models.vision_transformer import Attention  # noqa: E402
from torch import nn  # noqa: E402

from .arch import ArchConfig, StageConfig  # noqa: E402
from .errors import SearchSpaceError  # noqa: E402

__all__ = ["SwiftFormerNAS", "build_model", "create_timm_model", "example_input"]


class TokenSelfAttention(Attention):
    """The ``mhsa`` mixer: timm's ViT multi-head self-attention over a stage's ``H * W`` tokens
    (``[B, C, H, W]`` in and out, as SwiftFormer's blocks pass them). Its cost grows with the
    square of the tokens."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        b, c, h, w = x.shape
        out = super().forward(x.flatten(2).transpose(1, 2), attn_mask=attn_mask,
                              is_causal=is_causal)
        return out.transpose(1, 2).reshape(b, c, h, w)


class SeparableSelfAttention(LinearSelfAttention):
    """The ``separable`` mixer: MobileViTv2's linear self-attention over all ``H * W`` tokens
    (one pixel per patch, so its context vector sees the whole stage, as additive attention's
    does). Its cost grows linearly with the tokens."""

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        return super().forward(x.reshape(b, c, 1, h * w)).reshape(b, c, h, w)


def attention_block(stage: StageConfig, *, drop_path: float, drop_rate: float,
                    layer_scale_init_value: float) -> Block:
    """timm's SwiftFormer ``Block`` (local representation, token mixer, MLP; same key names)
    with the stage's token mixer as its ``attn``."""
    block = Block(stage.width, mlp_ratio=stage.mlp_ratio, drop_rate=drop_rate,
                  drop_path=drop_path, layer_scale_init_value=layer_scale_init_value)
    if stage.mixer == "mhsa":
        block.attn = TokenSelfAttention(  # type: ignore[assignment]
            stage.width, num_heads=stage.heads or 1, qkv_bias=True)
    elif stage.mixer == "separable":
        block.attn = SeparableSelfAttention(stage.width)  # type: ignore[assignment]
    return block


class _ArchStage(Stage):
    """timm's ``Stage`` (same forward, same names) with blocks chosen by a :class:`StageConfig`."""

    def __init__(
        self,
        stage: StageConfig,
        *,
        downsample: nn.Module | None,
        block_drop_path: list[float],
        drop_rate: float,
        layer_scale_init_value: float,
    ) -> None:
        nn.Module.__init__(self)  # timm's __init__ hard-codes "attention in the last block"
        self.grad_checkpointing = False
        self.downsample = downsample if downsample is not None else nn.Identity()  # type: ignore[assignment]
        blocks: list[nn.Module] = []
        for kind, dpr in zip(stage.block_kinds(), block_drop_path, strict=True):
            if kind == "attn":
                blocks.append(attention_block(stage, drop_path=dpr, drop_rate=drop_rate,
                                              layer_scale_init_value=layer_scale_init_value))
            else:
                blocks.append(ConvEncoder(
                    dim=stage.width, hidden_dim=stage.hidden_width, kernel_size=3, drop_path=dpr,
                ))
        self.blocks = nn.Sequential(*blocks)


class SwiftFormerNAS(SwiftFormer):
    """A SwiftFormer built from an :class:`ArchConfig` (timm interface and key names)."""

    def __init__(
        self,
        arch: ArchConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-5,
        global_pool: str = "avg",
        init_weights: bool = True,
    ) -> None:
        nn.Module.__init__(self)
        if global_pool not in ("", "avg"):
            raise ValueError(f"`global_pool` must be '' or 'avg', but got {global_pool!r}.")
        self.arch = arch
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.feature_info = []
        widths = arch.widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0] // 2, 3, 2, 1),
            nn.BatchNorm2d(widths[0] // 2),
            nn.ReLU(),
            nn.Conv2d(widths[0] // 2, widths[0], 3, 2, 1),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        # Stochastic depth grows linearly over all blocks, as in timm.
        total = arch.num_blocks
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages: list[nn.Module] = []
        prev_width, first_block = widths[0], 0
        for i, stage in enumerate(arch.stages):
            downsample = (
                Embedding(prev_width, stage.width, patch_size=3, stride=2, padding=1)
                if i > 0 else None
            )
            stages.append(_ArchStage(
                stage,
                downsample=downsample,
                block_drop_path=rates[first_block:first_block + stage.depth],
                drop_rate=proj_drop_rate,
                layer_scale_init_value=layer_scale_init_value,
            ))
            first_block += stage.depth
            prev_width = stage.width
            self.feature_info.append(
                dict(num_chs=stage.width, reduction=2 ** (i + 2), module=f"stages.{i}")
            )
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = out_chs = widths[-1]
        self.norm = nn.BatchNorm2d(out_chs)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = Linear(out_chs, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = Linear(out_chs, num_classes) if num_classes > 0 else nn.Identity()
        self.distilled_training = False
        if init_weights:  # off for shape-only builds (the meta device), where it is slow
            self._initialize_weights()


def build_model(arch: ArchConfig, **kwargs: Any) -> SwiftFormerNAS:
    """Build ``arch`` with random weights. ``kwargs`` go to :class:`SwiftFormerNAS`
    (``num_classes``, ``drop_path_rate``, ...)."""
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"build_model expects an ArchConfig, but got {type(arch).__name__}.")
    return SwiftFormerNAS(arch, **kwargs)


def create_registered_model(variant: str, arch: ArchConfig, pretrained: bool = False,
                            **kwargs: Any) -> nn.Module:
    """What a timm ``@register_model`` function for ``arch`` returns, built like timm's own
    ``swiftformer_*``: through ``build_model_with_cfg``, so ``features_only=True`` and
    ``out_indices`` make a backbone (``FeatureListNet`` over the 4 stages, strides 4-32) and
    ``timm.data.resolve_data_config`` finds the input size and normalisation."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from timm.models import build_model_with_cfg

    if pretrained:
        raise SearchSpaceError(f"{variant} has no pretrained weights; train it first.")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm passes them
        kwargs.pop(key, None)
    res = arch.resolution
    cfg = {
        "url": "", "num_classes": kwargs.get("num_classes", 1000),
        "input_size": (3, res, res), "pool_size": (res // 32, res // 32),
        "crop_pct": 0.95, "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0", "classifier": ("head", "head_dist"),
    }
    return build_model_with_cfg(
        SwiftFormerNAS, variant, pretrained=False, pretrained_cfg=cfg,
        feature_cfg={"out_indices": (0, 1, 2, 3), "flatten_sequential": True},
        arch=arch, **kwargs,
    )


def create_timm_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **kwargs)`` with a clear error for unknown
    names. Never downloads weights."""
    import timm

    if kwargs.pop("pretrained", False):
        raise SearchSpaceError("swiftnas never downloads weights: pretrained=True is not allowed.")
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" not in str(exc):
            raise
        close = timm.list_models(f"*{name[:6]}*")[:5]
        raise SearchSpaceError(
            f"timm has no model {name!r}. Check the spelling"
            + (f"; similar names: {', '.join(close)}." if close else "; see timm.list_models().")
        ) from None


def example_input(arch: ArchConfig, *, batch_size: int = 1) -> torch.Tensor:
    """A random input of the right shape for ``arch``."""
    return torch.randn(batch_size, 3, arch.resolution, arch.resolution)
