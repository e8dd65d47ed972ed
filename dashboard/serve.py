"""Start the dashboard's Streamlit server with the one-time costs of a fresh process paid first.

    python -m dashboard.serve STORAGE_URL [streamlit run options...]

Streamlit runs the app in the server process, so the first page a user opened used to pay for
importing torch, timm, Optuna, plotly and Altair, for plotly and Altair loading their schemas,
and for SQLAlchemy compiling Optuna's queries: about 8 s. ``warm_up`` pays them before the
server listens, so the first page opens in its normal time. It also builds the trial rows of the
newest studies, starting no further study once ``WARM_ROWS_S`` have passed;
``dashboard.data.study`` keeps them, so the Pareto explorer of a 10,000-trial study then reads
the storage and decodes only the trials finished since (0.1 s instead of 1.3 s). Every page
still reads the storage itself; nothing shown comes from start-up.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from pathlib import Path

STORAGE_ENV = "SWIFTNAS_STORAGE"
WARM_ROWS_S = 5.0  # no further study is started after this long (about 40,000 trials here)


def is_up(base_url: str) -> bool:
    """Whether the Streamlit server at ``base_url`` answers its health check."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def warm_up(storage_url: str) -> None:
    # Optuna imports these lazily; importance pulls in scikit-learn (~0.3 s)
    import altair as alt
    import optuna.importance
    import optuna.visualization  # noqa: F401
    import pandas as pd
    import plotly.graph_objects as go

    import search_spaces  # before timm, as everywhere
    import search_spaces.model  # noqa: F401  (torch and timm: the Latency page, exports)
    from dashboard import data, plots  # noqa: F401  (Optuna, pandas; torch is lazy there)

    go.Figure(go.Scatter(x=[0.0], y=[0.0]))  # loads plotly's validator table (~0.3 s)
    alt.Chart(pd.DataFrame({"x": [0.0]})).mark_point().encode(x="x:Q").to_dict()  # schema, 0.3 s
    # opens the storage and runs Optuna's trial queries once; errors are the pages' to show
    with contextlib.suppress(Exception):
        data.studies(storage_url)
    with contextlib.suppress(Exception):
        deadline = time.monotonic() + WARM_ROWS_S
        for name in reversed(data.names(storage_url)):  # newest first
            if time.monotonic() > deadline:
                break
            with contextlib.suppress(Exception):  # another tool's study: not a swiftnas one
                data.study(storage_url, name)
    # Everything loaded so far (modules, schemas, the kept rows) lives as long as the server:
    # keep it out of the garbage collector's full passes, which otherwise walk it on every page
    gc.freeze()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    storage_url, options = argv[0], argv[1:]
    os.environ[STORAGE_ENV] = storage_url
    warm_up(storage_url)
    from streamlit.web import cli

    app = Path(__file__).with_name("app.py")
    sys.argv = ["streamlit", "run", str(app), *options]
    cli.main(prog_name="streamlit")  # as `python -m streamlit` does; exits when the server stops
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
