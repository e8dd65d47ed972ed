"""``swiftnas space``: look at the search space, the presets and random samples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ._common import OutputFormat, console, err_console, load_arch, print_json

if TYPE_CHECKING:
    from search_spaces import ArchConfig

space_app = typer.Typer(
    rich_markup_mode=None,  # help texts are plain: '.[coreml]' must print as it is

    help="Inspect the SwiftFormer search space, its presets and random samples.",
    no_args_is_help=True,
)


def _row(name: str, arch: ArchConfig) -> dict[str, Any]:
    from search_spaces import arch_stats

    stats = arch_stats(arch)
    return {
        "name": name,
        "key": arch.key(),
        "params": stats.params,
        "macs": stats.macs,
        "params_m": round(stats.params_m, 3),
        "macs_g": round(stats.macs_g, 3),
        "arch": arch.to_dict(),
    }


SPACE_HELP = ("Search space: default, or mixers (the token mixer per stage as well: additive, "
              "mhsa, separable).")


def _space(name: str) -> Any:
    from search_spaces.space import named_space

    return named_space(name)


def _arch_table(rows: list[dict[str, Any]], title: str) -> Table:
    from search_spaces import ArchConfig

    archs = [ArchConfig.from_dict(row["arch"]) for row in rows]
    mixers = any(a.mixers - {"additive"} for a in archs)  # the column only where it says more
    table = Table(title=title)
    cols = ("name", "res", "depths", "widths", "mlp", "attn blocks",
            *(("mixers",) if mixers else ()), "params (M)", "MACs (G)")
    for col in cols:
        table.add_column(col, justify="right" if col in ("params (M)", "MACs (G)") else "left")
    for row, arch in zip(rows, archs, strict=True):
        stages = arch.stages
        table.add_row(
            row["name"],
            str(arch.resolution),
            " ".join(str(s.depth) for s in stages),
            " ".join(str(s.width) for s in stages),
            " ".join(f"{s.mlp_ratio:g}" for s in stages),
            " | ".join(",".join(map(str, s.attn)) or "-" for s in stages),
            *((" | ".join(s.mixer_label() for s in stages),) if mixers else ()),
            f"{row['params_m']:.2f}",
            f"{row['macs_g']:.3f}",
        )
    return table


def _rows_with_progress(named: list[tuple[str, ArchConfig]]) -> list[dict[str, Any]]:
    from rich.progress import track

    if len(named) <= 8:
        return [_row(n, a) for n, a in named]
    return [
        _row(n, a)
        for n, a in track(named, description="Counting params and MACs", console=err_console,
                          transient=True)
    ]


@space_app.command("presets")
def presets(
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """List the SwiftFormer presets (timm's swiftformer_xs/s/l1/l3) with params and MACs."""
    from search_spaces import PRESETS

    rows = _rows_with_progress(list(PRESETS.items()))
    if fmt is OutputFormat.json:
        print_json(rows)
    else:
        console.print(_arch_table(rows, "SwiftFormer presets (timm-identical)"))


@space_app.command("sample")
def sample(
    n: int = typer.Option(5, "--n", min=1, help="Number of architectures to sample."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same samples)."),
    space: str = typer.Option("default", "--space", help=SPACE_HELP),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Sample architectures uniformly from a search space, with params and MACs.

    ``--format json`` prints a list; each item's ``arch`` object is a valid ArchConfig JSON file.
    """
    archs = _space(space).sample_random(n, seed=seed)
    rows = _rows_with_progress([(f"#{i}", a) for i, a in enumerate(archs)])
    if fmt is OutputFormat.json:
        print_json(rows)
    else:
        console.print(_arch_table(rows, f"{n} random architectures (seed {seed})"))


@space_app.command("show")
def show(
    arch: str = typer.Argument(
        None, help="A preset name (xs, s, l1, l3) or an ArchConfig JSON file. "
        "Without it, the space's choices are shown.", show_default=False,
    ),
    space: str = typer.Option("default", "--space", help=SPACE_HELP),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Show a search space's choices, or one architecture block by block (with its mixers)."""
    chosen = _space(space)
    if arch is None:
        data = chosen.describe()
        if fmt is OutputFormat.json:
            print_json(data)
            return
        mixers = any(st["mixers"] != ["additive"] for st in data["stages"])
        table = Table(title=f"{space.capitalize()} SwiftFormer space: {data['size']:.3e} "
                            "architectures")
        for col in ("stage", "depths", "widths", "mlp ratios", "attention count", "stride",
                    *(("mixers", "mhsa heads") if mixers else ())):
            table.add_column(col)
        for i, st in enumerate(data["stages"]):
            table.add_row(
                str(i), ", ".join(map(str, st["depths"])), ", ".join(map(str, st["widths"])),
                ", ".join(f"{m:g}" for m in st["mlp_ratios"]),
                ", ".join(map(str, st["attn_counts"])), ", ".join(map(str, st["attn_strides"])),
                *((", ".join(st["mixers"]), ", ".join(map(str, st.get("heads", []))))
                  if mixers else ()),
            )
        console.print(table)
        console.print(f"resolutions: {', '.join(map(str, data['resolutions']))}")
        return
    config = load_arch(arch)
    row = _row(arch, config)
    row["in_default_space"] = _space("default").contains(config)
    if space != "default":
        row[f"in_{space}_space"] = chosen.contains(config)
    if fmt is OutputFormat.json:
        print_json(row)
        return
    table = Table(title=f"{arch}: {row['params_m']:.2f} M params, {row['macs_g']:.3f} GMACs at "
                        f"{config.resolution} px")
    for col in ("stage", "depth", "width", "mlp ratio", "mixer", "blocks"):
        table.add_column(col)
    for i, st in enumerate(config.stages):
        kinds = " ".join(st.block_letters())
        table.add_row(str(i), str(st.depth), str(st.width), f"{st.mlp_ratio:g}",
                      st.mixer_label(), kinds)
    console.print(table)
    console.print(f"key: {row['key']}")
    console.print("blocks: c = conv encoder, A = efficient additive attention, "
                  "M = multi-head self-attention, S = separable self-attention")
    console.print(f"in default space: {row['in_default_space']}")
    if space != "default":
        console.print(f"in {space} space: {row[f'in_{space}_space']}")
