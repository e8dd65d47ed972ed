"""``swiftnas dashboard``: start the Streamlit app on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from ._common import console


def dashboard(
    storage: str = typer.Option("sqlite:///swiftnas.db", "--storage",
                                help="SQLAlchemy URL of the swiftnas storage to browse."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
) -> None:
    """Browse studies, Pareto fronts and candidates in a local web app (Streamlit)."""
    from nas.search import SearchError

    try:
        import streamlit  # noqa: F401

        import dashboard as package
    except ImportError:
        raise SearchError("the dashboard needs Streamlit and plotly: "
                          "`pip install -e '.[dashboard]'`") from None
    app = Path(package.__file__).with_name("app.py")
    console.print(f"swiftnas dashboard on http://127.0.0.1:{port} (storage {storage}); "
                  "Ctrl-C stops it")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    env = {**os.environ, "SWIFTNAS_STORAGE": storage}
    raise typer.Exit(subprocess.call(cmd, env=env))
