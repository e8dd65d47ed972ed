"""The command line: help, output formats and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from search_spaces import PRESETS, ArchConfig


def _swiftnas() -> list[str]:
    exe = shutil.which("swiftnas", path=str(Path(sys.executable).parent))
    assert exe, "the swiftnas console script is not installed (pip install -e .)"
    return [exe]


def test_console_script_help_and_one_line_error() -> None:
    ok = subprocess.run([*_swiftnas(), "--help"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0
    assert "space" in ok.stdout
    bad = subprocess.run(
        [*_swiftnas(), "space", "show", "nosuchpreset"], capture_output=True, text=True,
        check=False,
    )
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert lines == ["error: Unknown preset 'nosuchpreset'. Available presets: xs, s, l1, l3."]


def _all_commands() -> list[list[str]]:
    """Every group and command of the CLI, read from the app itself (new ones are covered)."""
    import typer

    from nas.cli import app

    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():  # groups have sub-commands
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


@pytest.mark.parametrize("args", _all_commands(), ids=lambda a: " ".join(a) or "swiftnas")
def test_every_command_has_help(args, capsys) -> None:
    assert main([*args, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_help_texts_keep_square_brackets(capsys) -> None:
    # Rich markup used to swallow "[coreml]" in `pip install -e '.[coreml]'`
    assert main(["export", "--help"]) == 0
    assert "'.[coreml]'" in " ".join(capsys.readouterr().out.split())


def test_importing_the_cli_does_not_import_torch() -> None:
    """`swiftnas --help` stays fast: torch, timm and Optuna load inside the commands."""
    code = "import sys, nas.cli; print(sorted({'torch', 'timm', 'optuna'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
    # nor do --help, --version, the groups' help or an error path (main() catches swiftnas
    # errors, so it imports their base class: search_spaces must load torch lazily)
    code = (
        "import sys\n"
        "from nas.cli import main\n"
        "for args in (['--help'], ['--version'], ['space', '--help'], ['latency', '--help'],\n"
        "             ['proxy', '--help'], ['db', '--help'], ['accuracy', '--help'],\n"
        "             ['search', '--help'], ['space', 'show', 'nosuchpreset']):\n"
        "    main(args)\n"
        "print(sorted({'torch', 'timm', 'optuna', 'numpy'} & set(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_presets_json_has_timm_params(capsys) -> None:
    assert main(["space", "presets", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["params"] for r in rows} == {
        "xs": 3_475_360, "s": 6_092_128, "l1": 12_057_920, "l3": 28_494_736,
    }
    assert ArchConfig.from_dict(rows[0]["arch"]) == PRESETS["xs"]


def test_sample_json_is_reproducible_and_loadable(capsys) -> None:
    assert main(["space", "sample", "--n", "3", "--seed", "5", "--format", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["space", "sample", "--n", "3", "--seed", "5", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert len(first) == 3
    for row in first:
        arch = ArchConfig.from_dict(row["arch"])
        assert arch.key() == row["key"]
        assert row["params"] > 0 and row["macs"] > 0


def test_show_reads_arch_json_and_reports_invalid_files(tmp_path, capsys) -> None:
    good = tmp_path / "arch.json"
    good.write_text(PRESETS["s"].to_json())
    assert main(["space", "show", str(good), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["params"] == 6_092_128 and row["in_default_space"] is True

    bad = tmp_path / "bad.json"
    data = json.loads(PRESETS["s"].to_json())
    data["stages"][0]["width"] = 47
    bad.write_text(json.dumps(data))
    assert main(["space", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`stages[0].width`" in err and "got 47" in err

    assert main(["space", "show", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_usage_errors_exit_non_zero(capsys) -> None:
    assert main(["space", "sample", "--n", "0"]) == 2
    assert main(["space", "sample", "--format", "xml"]) == 2


def test_proxy_evaluate_on_nas_bench_macro_json(capsys) -> None:
    args = ["proxy", "evaluate", "--benchmark", "nas-bench-macro", "--sample", "6",
            "--proxy", "act_units", "--proxy", "params", "--format", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["networks"] == 6
    assert set(out["proxies"]) == {"act_units", "params"}
    assert -1 <= out["proxies"]["act_units"]["spearman"] <= 1


def test_proxy_score_and_errors(capsys) -> None:
    assert main(["proxy", "score", "--arch", "xs", "--proxy", "act_units", "--resolution", "64",
                 "--batch-size", "4", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scores"]["act_units"] > 0 and out["settings"]["resolution"] == 64
    # by default the search's own proxies only (all of them take minutes); MACs labelled
    assert main(["proxy", "score", "--arch", "xs", "--batch-size", "4", "--format", "json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["scores"]) == ["grad_norm", "score", "swap"]
    assert main(["proxy", "score", "--arch", "xs", "--batch-size", "4", "--proxy", "macs"]) == 0
    assert "macs (at 64 px)" in capsys.readouterr().out
    assert main(["proxy", "score", "--arch", "xs", "--proxy", "nope"]) == 2
    assert "Available proxies" in capsys.readouterr().err
    assert main(["proxy", "score"]) == 2
    assert "exactly one of --arch" in capsys.readouterr().err
    assert main(["proxy", "evaluate", "--benchmark", "missing.jsonl"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _at_80_columns(*args: str) -> str:
    exe = shutil.which("swiftnas", path=str(Path(sys.executable).parent))
    assert exe
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "COLUMNS": "80"}, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    return done.stdout


def test_latency_devices_at_80_columns_tells_groups_apart() -> None:
    from latency_models.defaults import load_predictor

    out = _at_80_columns("latency", "devices")
    lines = out.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("──")) + 1:]
    rows: list[list[str]] = []
    for line in body:  # a wrapped source continues on an indented line
        if line.startswith(" ") and rows:
            rows[-1].extend(line.split())
        elif line.strip():
            rows.append(line.split())
    # one row per group, and no two rows read the same
    assert len(rows) == len(load_predictor().groups)
    assert len({tuple(r) for r in rows}) == len(rows)
    assert "…" not in out
    assert "SwiftFormer ICCV'23" in out and "coreml-model-zoo mobilenet_v2" in out


def test_studies_at_80_columns_keeps_headers_and_dates(tmp_path: Path) -> None:
    from nas.search import StudySpec, run_study

    url = f"sqlite:///{tmp_path}/s.db"
    run_study(StudySpec(name="a-rather-long-study-name", latency_budget_ms=1.2,
                        sampler="random", seed=0), url, 2)
    out = _at_80_columns("studies", "--storage", url)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("study"))
    header = lines[at].split()
    assert header == ["study", "device", "budget", "sampler", "done", "feasible", "run/fail",
                      "updated"]
    assert "…" not in out
    # the name is folded over lines, never cut
    assert "".join(line.split()[0] for line in lines[at + 2:] if line.strip()) \
        .startswith("a-rather-long-study-name")


def test_predicting_a_preset_needs_neither_torch_nor_timm(tmp_path: Path) -> None:
    """The presets' features ship with the package, and a prediction's features are cached on
    disk: `latency predict --arch xs` stays fast (benchmarks/startup.py has the timings)."""
    code = (
        "import sys\n"
        "from nas.cli import main\n"
        "code = main(['latency', 'predict', '--arch', 'xs', '--device', 'iPhone 14',\n"
        "             '--format', 'json'])\n"
        "print(code, sorted({'torch', 'timm'} & set(sys.modules)), file=sys.stderr)"
    )
    env = {**__import__("os").environ, "SWIFTNAS_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=True)
    assert done.stderr.strip().splitlines()[-1] == "0 []"
    assert json.loads(done.stdout)["latency_ms"] > 0
