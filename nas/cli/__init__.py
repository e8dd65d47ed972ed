"""The ``swiftnas`` command line.

Each command group lives in its own module and is registered here. Heavy imports (torch, timm,
Optuna, Ray) happen inside the commands, so ``swiftnas --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from .dashboard import dashboard, optuna_dashboard
from .db import db_app
from .latency import latency_app
from .proxy import proxy_app
from .search import export, pareto, search, studies
from .space import space_app
from .train import accuracy_app, train, train_batch

app = typer.Typer(
    rich_markup_mode=None,  # help texts are plain: '.[coreml]' must print as it is

    name="swiftnas",
    help="Hardware-aware architecture search for SwiftFormer-style mobile vision transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(space_app, name="space")
app.add_typer(proxy_app, name="proxy")
app.add_typer(latency_app, name="latency")
app.add_typer(db_app, name="db")
app.add_typer(accuracy_app, name="accuracy")
for command in (search, pareto, export, studies, train, dashboard):
    app.command()(command)
app.command("train-batch")(train_batch)
app.command("optuna-dashboard")(optuna_dashboard)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"swiftnas {version('swiftnas')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Hardware-aware architecture search for SwiftFormer-style mobile vision transformers."""


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: swiftnas errors become one line on stderr and exit code 2."""
    from search_spaces.errors import SwiftNASError

    try:
        # Without standalone mode click returns typer.Exit's code instead of raising it.
        code = app(args=argv, prog_name="swiftnas", standalone_mode=False)
    except SwiftNASError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except OSError as exc:  # a full or read-only disk met while writing: one line, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or exc}{where}; check disk space and permissions",
                   err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("Aborted.", err=True)
        return 130
    except typer.TyperException as exc:  # usage errors (bad option values, unknown commands)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        return int(getattr(exc, "exit_code", 2) or 2)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
