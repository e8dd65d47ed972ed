"""``swiftnas proxy``: training-free accuracy proxies, their validation and single scores."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ._common import OutputFormat, console, err_console, load_arch, print_json

proxy_app = typer.Typer(
    rich_markup_mode=None,  # help texts are plain: '.[coreml]' must print as it is

    help="Training-free accuracy proxies: list, validate against trained accuracies, score.",
    no_args_is_help=True,
)


@proxy_app.command("list")
def list_proxies() -> None:
    """List the registered proxies."""
    from nas.proxies import available_proxies, get_proxy

    table = Table(title="Registered proxies (higher is better)")
    table.add_column("name")
    table.add_column("kind")
    table.add_column("definition")
    for name in available_proxies():
        p = get_proxy(name)
        table.add_row(name, "free" if p.free else ("grad" if p.needs_backward else "forward"),
                      p.description)
    console.print(table)


@proxy_app.command("evaluate")
def evaluate(
    benchmark: str = typer.Option(
        ..., "--benchmark", help="'nas-bench-macro', 'trained' (the accuracies stored in "
        "--storage by `swiftnas train` and `swiftnas accuracy import`) or a JSONL file of timm "
        "models with trained accuracies (see README)."),
    storage: str = typer.Option("sqlite:///swiftnas.db", "--storage", help="With --benchmark "
                                "trained: the storage URL holding the trained accuracies."),
    dataset: str = typer.Option(None, "--dataset", help="With --benchmark trained: only "
                                "accuracies on this dataset (needed when several are stored)."),
    proxy: list[str] = typer.Option(
        None, "--proxy", help="Proxy to evaluate (repeat for several). Default: the default "
        "score and the free baselines."),
    sample: int = typer.Option(None, "--sample", min=3, help="Evaluate N networks sampled with "
                               "--seed (default: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling, weights and inputs."),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Gaussian inputs per pass."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes (one thread each)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Spearman and Kendall of each proxy against trained accuracy, and time per network."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from nas.proxies import get_proxy
    from nas.proxies.evaluate import jsonl_specs, nas_bench_macro_specs, run_evaluation, summarise

    names = [get_proxy(p).name for p in (proxy or ["score", "act_units", "macs", "params",
                                                    "depth"])]
    if benchmark == "nas-bench-macro":
        specs = nas_bench_macro_specs(sample=sample, seed=seed)
    elif benchmark == "trained":
        from nas.training.results import trained_specs

        specs = trained_specs(storage, dataset=dataset)
    else:
        specs = jsonl_specs(Path(benchmark))
        if sample is not None and sample < len(specs):
            import random

            specs = random.Random(seed).sample(specs, sample)
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("Scoring networks", total=len(specs))
        rows = run_evaluation(specs, names, batch_size=batch_size, seed=seed, workers=workers,
                              on_row=lambda _r: progress.advance(task))
    quality = summarise(rows, names)
    failures = {name: err for r in rows for name, err in r.errors.items()}
    if fmt is OutputFormat.json:
        print_json({
            "benchmark": benchmark, "networks": len(rows), "seed": seed,
            "proxies": {q.proxy: {"spearman": q.spearman, "kendall": q.kendall, "n": q.n,
                                  "failures": q.failures,
                                  "seconds_per_network": q.seconds_per_network}
                        for q in quality},
        })
    else:
        table = Table(title=f"{benchmark}: {len(rows)} networks, seed {seed}")
        for col in ("proxy", "Spearman", "Kendall", "n", "failures", "s / network"):
            table.add_column(col, justify="left" if col == "proxy" else "right")
        for q in quality:
            table.add_row(q.proxy, f"{q.spearman:.3f}", f"{q.kendall:.3f}", str(q.n),
                          str(q.failures), f"{q.seconds_per_network:.3f}")
        console.print(table)
        console.print("Time of proxies that share a forward-backward pass (score, swap, naswot, "
                      "grad_norm) is counted on the first one computed.")
    for err in list(failures.values())[:5]:
        err_console.print(f"warning: {err}")


@proxy_app.command("score")
def score(
    arch: str = typer.Option(None, "--arch", help="ArchConfig JSON file or preset name."),
    model: str = typer.Option(None, "--model", help="A timm model name (random weights)."),
    proxy: list[str] = typer.Option(None, "--proxy", help="Proxy (repeat), or 'all'. Default: "
                                    "the search's own (score, swap, grad_norm)."),
    resolution: int = typer.Option(None, "--resolution", help="Proxy input resolution "
                                   "(default: the search default)."),
    batch_size: int = typer.Option(None, "--batch-size", min=2, help="Gaussian inputs per pass."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights and inputs."),
    images: Path = typer.Option(None, "--images", help="Folder of images to use instead of "
                                "Gaussian inputs (labels stay random)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Proxy scores of one architecture or timm model."""
    import dataclasses

    from nas.proxies import DEFAULT_SETTINGS, ProxyError, available_proxies, score_model
    from search_spaces import build_model

    if (arch is None) == (model is None):
        raise ProxyError("Give exactly one of --arch (ArchConfig JSON or preset) and --model "
                         "(timm name).")
    settings = dataclasses.replace(
        DEFAULT_SETTINGS, seed=seed, image_folder=str(images) if images else None,
        **({"resolution": resolution} if resolution else {}),
        **({"batch_size": batch_size} if batch_size else {}),
    )
    import torch

    torch.manual_seed(seed)
    if arch is not None:
        config = load_arch(arch)
        net = build_model(config)
        label = config.key()
    else:
        from search_spaces import create_timm_model

        net = create_timm_model(model)
        label = model
    from nas.search.evaluation import DEFAULT_PROXIES

    names = (available_proxies() if proxy == ["all"] else proxy) or list(DEFAULT_PROXIES)
    with err_console.status(f"computing {len(names)} proxies at {settings.resolution} px "
                            f"(all of them take minutes on a busy machine)"):
        scores = score_model(net, proxies=names, settings=settings, model_name=label)
    if fmt is OutputFormat.json:
        print_json({"model": label, "settings": dataclasses.asdict(settings), "scores": scores})
        return
    table = Table(title=f"{label} at {settings.resolution} px, batch {settings.batch_size}, "
                        f"seed {settings.seed}")
    table.add_column("proxy")
    table.add_column("score", justify="right")
    for name, value in scores.items():
        # size baselines are counted on the proxy input, not the model's own resolution
        shown = f"{name} (at {settings.resolution} px)" if name in ("macs", "act_units") else name
        table.add_row(shown, f"{value:.6g}")
    console.print(table)
