"""Page load times of the dashboard in a real browser, as a new user opens it.

    python benchmarks/dashboard_speed.py --storage sqlite:///bench.db --study nsga2-0 \
        [--screenshot docs/pareto_explorer.png]

Starts `swiftnas dashboard` on a free port (fresh server: empty Streamlit caches), then opens
each page twice in Chromium (playwright, Debian's /usr/bin/chromium) and times from navigation
until the page's main content is visible: first visit (cold caches) and second (warm). The very
first request also pays the server's imports (torch, timm, Optuna), reported apart. Results go
to results/dashboard.json. Use a finished 300-trial study (`benchmarks/search.py quality` leaves
them in /dev/shm/swiftnas-bench-*).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "dashboard.json"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--screenshot", default=None)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    import search_spaces  # noqa: F401
    from dashboard import data

    view = data.study(args.storage, args.study)
    trial = int(view.trials[view.trials["pareto"]].sort_values("accuracy_score").iloc[-1]["trial"])
    pages = {
        "studies": ("studies", '[data-testid="stDataFrame"]'),
        "pareto": (f"pareto&study={args.study}", ".js-plotly-plot .scatterlayer path.point"),
        "candidate": (f"candidate&study={args.study}&trial={trial}",
                      '[data-testid="stDownloadButton"]'),
        "latency": ("latency", ".js-plotly-plot .scatterlayer path.point"),
        "insights": (f"insights&study={args.study}", ".js-plotly-plot"),
    }
    port = _port()
    exe = Path(sys.executable).with_name("swiftnas")
    server = subprocess.Popen([str(exe), "dashboard", "--storage", args.storage, "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, object] = {"storage": args.storage, "study": args.study,
                              "trials": len(view.trials)}
    try:
        while not _up(f"{base}/_stcore/health"):
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            t0 = time.perf_counter()
            page.goto(f"{base}/?page=studies")
            page.wait_for_selector(pages["studies"][1])
            out["server_first_request_s"] = time.perf_counter() - t0
            timings = {}
            for name, (query, selector) in pages.items():
                runs = []
                for _ in range(2):
                    page.goto("about:blank")
                    t = time.perf_counter()
                    page.goto(f"{base}/?page={query}")
                    page.wait_for_selector(selector, state="visible")
                    runs.append(time.perf_counter() - t)
                    if name == "pareto" and args.screenshot:
                        page.wait_for_timeout(500)
                        page.screenshot(path=args.screenshot)
                timings[name] = {"first_s": runs[0], "second_s": runs[1]}
                print(name, timings[name], flush=True)
            out["pages"] = timings
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
