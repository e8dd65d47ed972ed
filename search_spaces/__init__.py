"""What a candidate is: architectures, the SwiftFormer search space and the model builder."""

from ._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # before anything imports timm (see the module's docstring)

from .arch import ArchConfig, StageConfig  # noqa: E402
from .errors import (  # noqa: E402
    InvalidArchError,
    SearchSpaceError,
    SwiftNASError,
    UnknownPresetError,
)
from .model import (  # noqa: E402
    SwiftFormerNAS,
    build_model,
    create_timm_model,
    example_input,
)
from .presets import PRESETS, TIMM_NAMES, get_preset  # noqa: E402
from .space import (  # noqa: E402
    RandomSuggester,
    StageChoices,
    SwiftFormerSpace,
    attention_indices,
)
from .stats import ArchStats, arch_stats, count_macs  # noqa: E402

__all__ = [
    "PRESETS",
    "TIMM_NAMES",
    "ArchConfig",
    "ArchStats",
    "InvalidArchError",
    "RandomSuggester",
    "SearchSpaceError",
    "StageChoices",
    "StageConfig",
    "SwiftFormerNAS",
    "SwiftFormerSpace",
    "SwiftNASError",
    "UnknownPresetError",
    "arch_stats",
    "attention_indices",
    "build_model",
    "count_macs",
    "create_timm_model",
    "ensure_torchvision_importable",
    "example_input",
    "get_preset",
]
