"""``swiftnas dashboard`` (the Streamlit app) and ``swiftnas optuna-dashboard`` (Optuna's own
dashboard with the latency budget respected), both on 127.0.0.1 by default."""

from __future__ import annotations

import os
import sys

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

        import dashboard  # noqa: F401
    except ImportError:
        raise SearchError("the dashboard needs Streamlit and plotly: "
                          "`pip install -e '.[dashboard]'`") from None
    console.print(f"swiftnas dashboard on http://127.0.0.1:{port} (storage {storage}); "
                  "warming up (about 10 s), then it opens; Ctrl-C stops it")
    # dashboard.serve pays the process's one-time costs (imports, first queries) before the
    # server listens, so a user's first page is not the slow one
    cmd = [sys.executable, "-m", "dashboard.serve", storage, "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    sys.stdout.flush()
    # become the server (not a parent waiting on it), so a signal to this process (SIGTERM from
    # a supervisor, not only Ctrl-C to the terminal) stops the server and leaves no orphan
    os.execv(sys.executable, cmd)


def optuna_dashboard(
    storage: str = typer.Option("sqlite:///swiftnas.db", "--storage",
                                help="SQLAlchemy URL of the swiftnas storage to browse."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve optuna-dashboard on a swiftnas storage, with "Best Trials" within the budget.

    Plain `optuna-dashboard URL` also works: it names the objectives and marks over-budget
    trials, but its "Best Trials" ignore constraints. This command fixes that one list."""
    from nas.search import SearchError

    try:
        import optuna_dashboard as _  # noqa: F401
    except ImportError:
        raise SearchError("optuna-dashboard is not installed: "
                          "`pip install -e '.[dashboard]'`") from None
    from nas.search.optuna_dashboard import serve

    console.print(f"optuna-dashboard on http://{host}:{port} (storage {storage}); "
                  "Ctrl-C stops it")
    serve(storage, host, port)
