"""`import timm` must work in any fresh interpreter of a swiftnas environment (see DESIGN.md).

The installed ``swiftnas-startup.pth`` hooks the first ``import torchvision``; these tests start
real interpreters from a directory outside the checkout, as a user's script would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
    )


def test_plain_import_timm_in_fresh_interpreter(tmp_path: Path) -> None:
    # the README's "From Python" situation: no swiftnas import before timm
    result = _run(
        "import timm\n"
        "m = timm.create_model('swiftformer_xs', pretrained=False)\n"
        "print(sum(p.numel() for p in m.parameters()))",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3475360"


def test_startup_hook_is_installed_and_imports_nothing_heavy(tmp_path: Path) -> None:
    result = _run(
        "import sys, sysconfig, pathlib\n"
        "pth = pathlib.Path(sysconfig.get_paths()['purelib'], 'swiftnas-startup.pth')\n"
        "print(pth.is_file(), '_swiftnas_startup' in sys.modules,"
        " any(m in sys.modules for m in ('torch', 'torchvision', 'timm')))",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "False"]


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
