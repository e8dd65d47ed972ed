"""`import timm` must work in a fresh interpreter once swiftnas is imported (see DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_import_timm_in_fresh_interpreter_after_search_spaces() -> None:
    result = _run(
        "import search_spaces, timm, torchvision\n"
        "m = timm.create_model('swiftformer_xs', pretrained=False)\n"
        "print(sum(p.numel() for p in m.parameters()))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3475360"


def test_compat_reports_whether_it_defined_the_schemas() -> None:
    # Either torchvision's own extension loads (False) or the compat module defined nms/qnms
    # (True); in both cases the ops exist afterwards and the call is idempotent.
    result = _run(
        "import torch\n"
        "from search_spaces._torchvision_compat import ensure_torchvision_importable as ensure\n"
        "first = ensure(); second = ensure()\n"
        "assert first == second, (first, second)\n"
        "assert hasattr(torch.ops.torchvision, 'nms') and hasattr(torch.ops.torchvision, 'qnms')\n"
        "print(first)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"True", "False"}
