"""Page load times of the dashboard in a real browser, as a new user opens it.

    python -m benchmarks.dashboard_speed --storage sqlite:///bench.db --study nsga2-0 \
        [--screenshot docs/pareto_explorer.png]

Starts `swiftnas dashboard` on a free port (a fresh server: empty Streamlit caches) and times,
in Chromium (playwright, Debian's /usr/bin/chromium), from the user's action until the page's
main content is visible, in two ways:

- click-through: open the dashboard's address (the Studies page), then click each page in the
  sidebar once, as a new user does (looking at each page for THINK_S first): every read is cold;
- direct links: open each page's deep link (`?page=...`) in a fresh page load, twice (first
  visit cold, second warm), after the Studies page in the same browser. A full load also makes
  the browser compile its chart libraries again;
- fresh-browser links: each deep link as the very first page of a fresh browser on a fresh
  server (a link a colleague sent): the browser loads Streamlit's scripts from nothing.

Each of --repeats rounds uses a fresh server and a fresh browser; medians and maxima are
reported. `swiftnas dashboard` warms its process (imports, first queries) before it listens;
that time is reported apart (server_start). Results go to results/dashboard.json. Use a
finished 300-trial study (`benchmarks/search.py quality` leaves them in
/dev/shm/swiftnas-bench-*).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dashboard.serve import is_up

RESULTS = Path(__file__).with_name("results") / "dashboard.json"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
THINK_S = 1.0  # a user looks at a page at least this long before clicking on
# A canvas counts once something is drawn on it (Vega draws a chart's whole scene in one
# pass); elements Streamlit marks stale (the previous page's, until the new run replaces
# them) do not count.
SHOWN_JS = """([title, selector, count]) =>
    [...document.querySelectorAll('h2')].some(h => h.textContent.includes(title))
    && [...document.querySelectorAll(selector)].filter(
        e => e.getClientRects().length > 0 && !e.closest('[data-stale="true"]')
             && (e.tagName !== 'CANVAS' || e.getContext('2d')
                 .getImageData(0, 0, e.width, e.height).data.some(v => v > 0))
    ).length >= count"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _served(storage: str) -> Iterator[tuple[str, float]]:
    """A fresh `swiftnas dashboard` (empty caches): its address and its start-up time."""
    port = _port()
    exe = Path(sys.executable).with_name("swiftnas")
    t = time.perf_counter()
    server = subprocess.Popen([str(exe), "dashboard", "--storage", storage, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while not is_up(base):
            if server.poll() is not None:
                raise SystemExit(f"swiftnas dashboard exited with {server.returncode}")
            time.sleep(0.1)
        yield base, time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)


def _pages(study: str, trial: int) -> dict[str, tuple[str, str, str, int]]:
    """page: (deep-link query, sidebar label, content selector, how many must be visible). The
    header check keeps the previous page's content from counting during a click-through."""
    # Vega draws on a canvas beyond 2,000 points; plotly's points (releases before 2026-12-04)
    # keep the benchmark comparable with the previous release
    point = (".vega-embed canvas, .vega-embed g.mark-symbol path, "
             ".js-plotly-plot .scatterlayer path.point")
    return {
        "studies": ("studies", "Studies", '[data-testid="stTable"]', 1),
        "pareto": (f"pareto&study={study}", "Pareto explorer", point, 1),
        "candidate": (f"candidate&study={study}&trial={trial}", "Candidate",
                      '[data-testid="stDownloadButton"]', 1),
        "latency": ("latency", "Latency model", point, 1),
        "insights": (f"insights&study={study}", "Optuna insights", ".js-plotly-plot", 4),
    }


def _timed(page: Any, pages: dict[str, tuple[str, str, str, int]], name: str,
           action: Callable[[], None]) -> float:
    _, title, selector, count = pages[name]
    t = time.perf_counter()
    action()
    page.wait_for_function(SHOWN_JS, arg=[title, selector, count], polling=50)
    return time.perf_counter() - t


def click_through(pw: Any, base: str, pages: dict[str, tuple[str, str, str, int]]
                  ) -> dict[str, float]:
    """Open the address, then click every page in the sidebar once (all cold)."""
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)
    out = {"studies": _timed(page, pages, "studies", lambda: page.goto(base))}
    for name in ("pareto", "candidate", "latency", "insights"):
        page.wait_for_timeout(THINK_S * 1000)
        label = page.locator('[data-testid="stSidebar"] label').filter(has_text=pages[name][1])
        out[name] = _timed(page, pages, name, label.click)
    browser.close()
    return out


def direct_links(pw: Any, base: str, pages: dict[str, tuple[str, str, str, int]],
                 screenshot: str | None) -> dict[str, list[float]]:
    """Each page's deep link in a fresh page load, twice: [first (cold), second (warm)]."""
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)
    out: dict[str, list[float]] = {}
    for name, (query, *_) in pages.items():
        out[name] = []
        for _ in range(2):
            page.goto("about:blank")
            out[name].append(_timed(page, pages, name,
                                    functools.partial(page.goto, f"{base}/?page={query}")))
            if name == "pareto" and screenshot:
                page.wait_for_timeout(500)
                page.screenshot(path=screenshot)
    browser.close()
    return out


def first_page(pw: Any, base: str, pages: dict[str, tuple[str, str, str, int]],
               name: str) -> float:
    """Page ``name``'s deep link as the very first page of a fresh browser."""
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)
    t = _timed(page, pages, name, functools.partial(page.goto, f"{base}/?page={pages[name][0]}"))
    browser.close()
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh server and browser each time; medians and maxima reported")
    parser.add_argument("--screenshot", default=None)
    parser.add_argument("--out", default=str(RESULTS), help="results JSON (default: %(default)s)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    import search_spaces  # noqa: F401
    from dashboard import data

    view = data.study(args.storage, args.study)
    trial = int(view.trials[view.trials["pareto"]].sort_values("accuracy_score").iloc[-1]["trial"])
    pages = _pages(args.study, trial)
    starts: list[float] = []
    clicks: dict[str, list[float]] = {name: [] for name in pages}
    links: dict[str, dict[str, list[float]]] = {n: {"first": [], "second": []} for n in pages}
    firsts: dict[str, list[float]] = {name: [] for name in pages}
    with sync_playwright() as pw:
        for _ in range(args.repeats):
            with _served(args.storage) as (base, start):
                starts.append(start)
                for name, t in click_through(pw, base, pages).items():
                    clicks[name].append(t)
            with _served(args.storage) as (base, start):
                starts.append(start)
                for name, (first, second) in direct_links(pw, base, pages,
                                                          args.screenshot).items():
                    links[name]["first"].append(first)
                    links[name]["second"].append(second)
            for name in pages:
                with _served(args.storage) as (base, start):
                    firsts[name].append(first_page(pw, base, pages, name))
            print("click-through", {k: round(v[-1], 2) for k, v in clicks.items()}, flush=True)

    def stats(xs: list[float]) -> dict[str, object]:
        return {"median_s": statistics.median(xs), "max_s": max(xs), "runs_s": xs}

    out = {
        "storage": args.storage, "study": args.study, "trials": len(view.trials),
        "repeats": args.repeats, "think_s": THINK_S, "server_start": stats(starts),
        "click_through": {n: stats(v) for n, v in clicks.items()},
        "direct_link_first": {n: stats(v["first"]) for n, v in links.items()},
        "direct_link_second": {n: stats(v["second"]) for n, v in links.items()},
        "fresh_browser_link": {n: stats(v) for n, v in firsts.items()},
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    kinds = ("click_through", "direct_link_first", "direct_link_second", "fresh_browser_link")
    print(f"{'page':<10} " + " ".join(f"{k:>22}" for k in kinds))
    for name in pages:
        cols = [out[k][name] for k in kinds]
        print(f"{name:<10} " + " ".join(
            f"{c['median_s']:>12.2f} (max {c['max_s']:.2f})" for c in cols))
    print(f"server start: median {statistics.median(starts):.1f} s")


if __name__ == "__main__":
    main()
