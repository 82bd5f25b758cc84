"""Dashboard speed, measured in a real browser (the issue's Speed section; reported in BENCHMARKS.md, not asserted).

1. Cold: a fresh disk cache, ``streamlit run`` started, then every page opened in turn in Chromium; time from
   starting the server until the last page is fully rendered (script finished, charts drawn, graph canvas drawn).
   Reported twice from the same walk: after the first five pages (home, sample graph, modularity, similarity, motifs:
   the pages the targets were first measured on) and after all of them (pruning and sanity check too).
2. Warm: the server restarted on the same disk cache (Streamlit's memory caches are empty again), same walk.
3. Slider: on the sample-graph page, move the layer slider to a layer already drawn; time from the key press until the
   new layer's graph canvas is drawn. Repeated, median reported.

Usage: .venv/bin/python bench/bench_dashboard.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_browser import (  # noqa: E402 - the browser test's server and wait helpers, shared on purpose
    ANALYSIS_PAGES,
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGES,
    free_port,
    graph_canvas_drawn,
    start_server,
    stop_server,
    wait_healthy,
    wait_rendered,
)


def walk_all_pages(browser, url: str) -> list[float]:
    """Open the home page, then every page through the sidebar links (one session, as a user would); seconds from
    the start until each page is rendered, in ``PAGES`` order."""
    context = browser.new_context(viewport={"width": 1500, "height": 2000})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    done = []
    for path, _, charts, iframes in PAGES:
        if path:
            page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]').click()
            page.wait_for_url(f"**/{path}*")
            page.wait_for_timeout(200)  # let the new script run start before waiting for it to finish
        wait_rendered(page, charts, iframes)
        if iframes:
            graph_canvas_drawn(page)
        done.append(time.perf_counter() - t0)
    context.close()
    return done


def run_server_walk(browser, cache_dir: str) -> tuple[float, list[float]]:
    """(seconds from starting ``streamlit run`` to healthy, seconds from there until each page is rendered)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(os.devnull, "w") as log:
        t0 = time.perf_counter()
        proc = start_server(port, cache_dir, log)
        try:
            wait_healthy(url, proc)
            t_up = time.perf_counter() - t0
            return t_up, walk_all_pages(browser, url)
        finally:
            stop_server(proc)


def _report(what: str, up: float, done: list[float]) -> None:
    per_page = ", ".join(f"{b - a:.1f}" for a, b in zip([0.0, *done[:-1]], done, strict=True))
    print(
        f"{what}: server up {up:.1f} s + first {ANALYSIS_PAGES} pages {done[ANALYSIS_PAGES - 1]:.1f} s = "
        f"{up + done[ANALYSIS_PAGES - 1]:.1f} s; all {len(done)} pages {up + done[-1]:.1f} s (per page: {per_page})",
        flush=True,
    )


def _legend_title(page) -> str:
    return page.frames[1].evaluate("() => document.querySelector('.gbs-head b').textContent")


def slider_times(browser, cache_dir: str, repeats: int) -> list[float]:
    """Seconds from a slider key press to the new graph drawn, between two layers that were both drawn before."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(os.devnull, "w") as log:
        proc = start_server(port, cache_dir, log)
        try:
            wait_healthy(url, proc)
            context = browser.new_context(viewport={"width": 1500, "height": 2000})
            page = context.new_page()
            page.goto(f"{url}/Sample_graph", wait_until="domcontentloaded")
            wait_rendered(page, 1, 1)
            thumb = page.locator('[data-testid="stSlider"] [data-testid="stSliderThumbValue"]').first.locator("..")
            for key in ("Home", "End"):  # draw both ends once (computes the first layer's graph and UMAP)
                thumb.click()
                page.keyboard.press(key)
                page.wait_for_timeout(300)
                wait_rendered(page, 1, 1)
                graph_canvas_drawn(page)
            times = []
            for i in range(repeats):
                key, layer = ("Home", "stem") if i % 2 == 0 else ("End", "layer3.8")
                thumb.click()
                t0 = time.perf_counter()
                page.keyboard.press(key)
                page.wait_for_function(
                    """(layer) => {
                        const f = document.querySelector('iframe');
                        const d = f && f.contentDocument;
                        const head = d && d.querySelector('.gbs-head b');
                        if (!head || !head.textContent.includes(': ' + layer + ' ')) return false;
                        const c = d.querySelector('#mynetwork canvas');
                        if (!c) return false;
                        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        let n = 0;
                        for (let i = 0; i < px.length; i += 16) if (px[i + 3] > 0 && (px[i] < 200 || px[i + 1] < 200)) n++;
                        return n > 200;
                    }""",
                    arg=layer,
                    timeout=60_000,
                    polling="raf",
                )
                times.append(time.perf_counter() - t0)
                wait_rendered(page, 1, 1)
            context.close()
            return times
        finally:
            stop_server(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    cache_dir = tempfile.mkdtemp(prefix="gbs-bench-dashboard-")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {chromium}", flush=True)
        _report("cold disk cache", *run_server_walk(browser, cache_dir))
        _report("warm disk cache (restart)", *run_server_walk(browser, cache_dir))
        slider = slider_times(browser, cache_dir, args.repeats)
        browser.close()
    print(
        f"layer slider to an already drawn layer: median {statistics.median(slider):.2f} s, "
        f"max {max(slider):.2f} s over {len(slider)} moves ({', '.join(f'{t:.2f}' for t in slider)})"
    )


if __name__ == "__main__":
    main()
