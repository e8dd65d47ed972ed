"""End to end in a real browser: `swiftnas dashboard` served on a free localhost port, driven
through Debian's Chromium by playwright (never `playwright install`: no downloads)."""

from __future__ import annotations

import http.server
import io
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import data
from dashboard.serve import is_up
from nas.search import StudySpec, run_study

from ._search_helpers import free_port, swiftnas_exe, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


class _Lure(http.server.BaseHTTPRequestHandler):
    """A local server that a crafted study name points links and images at: any request to it
    means the browser rendered user text as Markdown or HTML."""

    hits: list[str] = []  # noqa: RUF012 (shared on purpose: the handler is made per request)

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def lure() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Lure)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _hostile_name(lure: str) -> str:
    return (f"evil **bold** [click]({lure}/link) ![img]({lure}/md.png) "
            f"<img src='{lure}/html.png'>")


@pytest.fixture(scope="module")
def served(lure: str) -> Iterator[tuple[str, str]]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        storage = f"sqlite:///{d}/web.db"
        run_study(StudySpec(name="web", latency_budget_ms=1.2, population_size=4, seed=4),
                  storage, 8)
        # evaluated already (same seed, cached): instant
        run_study(StudySpec(name=_hostile_name(lure), latency_budget_ms=1.2, population_size=4,
                            seed=4), storage, 1)
        port = free_port()
        proc = subprocess.Popen([swiftnas_exe(), "dashboard", "--storage", storage, "--port",
                                 str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: is_up(f"http://127.0.0.1:{port}"), 90), \
                "swiftnas dashboard did not start"
            yield f"http://127.0.0.1:{port}", storage
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # SIGTERM to `swiftnas dashboard` stops the server itself (it used to leave it orphaned)
        assert wait_for(lambda: not is_up(f"http://127.0.0.1:{port}"), 10), \
            "the Streamlit server outlived `swiftnas dashboard`"


def test_pareto_select_and_export_in_chromium(served) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, storage = served
    view = data.study(storage, "web")
    n_complete = int((view.trials["state"] == "complete").sum())
    front = view.trials[view.trials["pareto"]].sort_values("latency_ms")
    trial = int(front.iloc[0]["trial"])
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(60_000)
        expect.set_options(timeout=90_000)  # the first page load imports torch in the server
        page.goto(f"{base}/?page=pareto&study=web")
        # a small chart is drawn as SVG: one labelled mark per trial, plus the four presets
        trials = page.locator('.vega-embed g.mark-symbol path[aria-label*="; kind: "]')
        try:
            expect(trials).to_have_count(n_complete)
            expect(page.locator('.vega-embed g.mark-symbol path[aria-label*="name: SwiftFormer-"]')
                   ).to_have_count(4)
        finally:
            page.screenshot(path=str(ARTIFACTS / "pareto_explorer.png"), full_page=True)
        expect(page.get_by_text(f"{n_complete} trials shown")).to_be_visible()
        box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Open a candidate")
        box.scroll_into_view_if_needed()  # the list pops up only when the box is on screen
        box.locator("input").click()
        options = page.get_by_role("option")
        expect(options).to_have_count(1 + len(front))  # "-" and one per front candidate
        assert f"web / trial {trial}" in options.all_inner_texts()
        page.keyboard.press("Escape")
        # clicking the fastest front point in the chart opens that candidate
        page.locator(f'.vega-embed [aria-label*="kind: Pareto front; trial: {trial};"]').click()
        expect(page.get_by_role("heading", name=f"web / trial {trial}")).to_be_visible()
        expect(page.get_by_text("on the feasible Pareto front")).to_be_visible()

        with page.expect_download() as download:
            page.get_by_role("button", name="Export for training (zip)").click()
        payload = Path(download.value.path()).read_bytes()
        page.screenshot(path=str(ARTIFACTS / "candidate.png"), full_page=True)
        browser.close()
    names = zipfile.ZipFile(io.BytesIO(payload)).namelist()
    assert f"swiftnas_web_t{trial}/arch.json" in names
    assert f"swiftnas_web_t{trial}/model.py" in names


def test_user_text_renders_as_plain_text_in_chromium(served, lure) -> None:
    """A crafted study name, on the Studies page and as a deep link's ``?study=`` (a known
    study and an unknown one), shows as its literal text: no link, no image, no request."""
    from playwright.sync_api import expect, sync_playwright

    base, _ = served
    name = _hostile_name(lure)
    quoted = urllib.parse.quote(name)
    _Lure.hits.clear()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=90_000)
        # the text shows as typed (an invisible word joiner defuses its URLs: not matched here)
        for url, literal in ((f"{base}/?page=studies", "evil **bold** [click]("),
                             (f"{base}/?page=candidate&study={quoted}", "html.png'> / trial 0"),
                             (f"{base}/?page=pareto&study={quoted}x", 'No study "evil **bold**'),
                             (f"{base}/?page=pareto&study={quoted}", "1 trials shown")):
            page.goto(url)
            expect(page.get_by_text(literal, exact=False).first).to_be_visible()
            if url.endswith(f"pareto&study={quoted}"):  # the name in the chart's tooltip
                page.locator('.vega-embed [aria-label*="; kind: "]').first.hover()
                expect(page.locator("#vg-tooltip-element")).to_contain_text("evil **bold**")
            html = page.content()
            assert f'href="{lure}' not in html and f'src="{lure}' not in html, url
            assert page.locator(f'a[href^="{lure}"], img[src^="{lure}"]').count() == 0, url
        page.wait_for_timeout(1000)  # time for any stray image fetch to arrive
        page.screenshot(path=str(ARTIFACTS / "hostile_name.png"), full_page=True)
        browser.close()
    assert _Lure.hits == []
