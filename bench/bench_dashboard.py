"""Dashboard speed, measured in a real browser (issue 10's rows; reported in BENCHMARKS.md, not asserted).

Default workspace (bundled digits in noise, N = 500, ResNet-56, k = 3), a fresh disk cache (``GBS_CACHE_DIR`` in a new
temp folder) unless said otherwise, background preparation as the app ships it (``GBS_BACKGROUND`` unset). Every
interaction is timed until the real end of the work: the script state is ``notRunning``, no spinner, progress bar or
skeleton is on the page, the expected plotly charts hold traces, and the graph iframe shows the expected graph (its
legend names the layer / k / sample count) with its canvas drawn. The page is polled every ~30 ms; what it shows
(script state, spinner and progress texts, the sidebar's preparation line) is kept as a timeline with timestamps.

Rows (target in brackets):
1. ``streamlit run`` started -> home page fully rendered [< 15 s].
2. Each page's first visit after home, through the sidebar links, same cold session as row 1 [< 10 s any page].
3. Sample graph page (its own fresh cache and server): wait ``--settle`` (30) s after it first rendered, then move the
   layer slider (keyboard on the slider thumb) to a layer not visited yet: key press -> new layer's graph drawn and
   script finished. Three different unvisited layers (first, middle, quarter depth); median and max [< 1.5 s].
4. Same page, sidebar "k (modularity)" 3 -> 5: Enter -> page rendered again with the k = 5 graph [< 4 s].
5. (k set back to 3, untimed) sidebar "Samples N" 500 -> 300: Enter -> page rendered again, 300-sample graph [< 8 s].
6. Warm restart: the server of rows 1-2 stopped and started again on the same disk cache (memory caches empty),
   every page walked as in row 2: server start -> last page rendered [< 6 s].

Rows 1, 2 and 6 share one disk cache, rows 3, 4 and 5 another; each load average is ``os.getloadavg()`` when the row
ended. ``--legacy`` also runs the earlier measurements (cold / warm walk totals, slider between drawn layers).

Usage: .venv/bin/python bench/bench_dashboard.py [--rows 1,2,3,4,5,6] [--settle 30] [--cap 180] [--table FILE]
       [--timelines] [--shots DIR] [--server-log DIR] [--legacy [--repeats 6]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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

ROWS = {  # number: (what, target seconds)
    1: ("`streamlit run` started -> home page rendered (cold cache)", 15.0),
    2: ("first visit of each page after home (cold cache), max over pages", 10.0),
    3: ("layer slider to an unvisited layer, 30 s after first render (median; max)", 1.5),
    4: ("sidebar k (modularity) 3 -> 5 on Sample graph -> rendered again", 4.0),
    5: ("sidebar N 500 -> 300 on Sample graph -> rendered again", 8.0),
    6: ("warm restart: server start -> all pages walked (same disk cache)", 6.0),
}
VIEWPORT = {"width": 1500, "height": 2000}

# One look at the page: is the work done, and what is it showing meanwhile. ``want``: charts / iframes expected,
# h1_not (the previous page's title: the new page has not replaced it yet), head_has (strings the graph legend must
# hold), plot_has (a string the first chart's title must hold).
PROBE = """(want) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const state = app ? app.getAttribute('data-test-script-state') : 'no app';
    const busyEls = Array.from(document.querySelectorAll('[data-testid="stSpinner"], [data-testid="stProgress"], '
        + '[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]'));
    const busy = busyEls.map(e => (e.getAttribute('data-testid').slice(2) + ' "'
        + (e.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 90) + '"'));
    const h1el = document.querySelector('h1');
    const h1 = h1el ? h1el.textContent.trim() : '';
    const status = Array.from(document.querySelectorAll('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]'))
        .map(e => e.innerText.trim()).filter(t => t.includes('prepar')).join(' | ');
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const plotsOk = plots.length >= want.charts && plots.every(p => p._fullData && p._fullData.length);
    const title0 = plots.length && plots[0].layout && plots[0].layout.title
        ? String(plots[0].layout.title.text || '') : '';
    const frames = Array.from(document.querySelectorAll('iframe'));
    let head = '';
    const doc = frames.length ? frames[0].contentDocument : null;
    if (doc) { const b = doc.querySelector('.gbs-head'); head = b ? b.textContent.replace(/\\s+/g, ' ').slice(0, 200) : ''; }
    let ready = state === 'notRunning' && busy.length === 0 && !!h1 && plotsOk && frames.length >= want.iframes
        && (!want.h1_not || h1 !== want.h1_not)
        && (want.head_has || []).every(s => head.includes(s))
        && (!want.plot_has || title0.includes(want.plot_has));
    let canvas = null;
    if (ready && want.iframes) {
        canvas = frames.slice(0, want.iframes).every(f => {
            const d = f.contentDocument;
            const c = d && d.querySelector('#mynetwork canvas');
            if (!c || !c.width) return false;
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < px.length; i += 16) if (px[i + 3] > 0 && (px[i] < 200 || px[i + 1] < 200)) n++;
            const bar = d.getElementById('loadingBar');
            const barGone = !bar || getComputedStyle(bar).display === 'none' || getComputedStyle(bar).opacity === '0';
            return n > 200 && barGone;
        });
        ready = canvas;
    }
    return {ready, state, busy, h1, status, head: head.slice(0, 80), title0: title0.slice(0, 60), canvas};
}"""


class Capped(Exception):
    """A wait ran past its cap."""


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    def __init__(self, args):
        self.args = args
        self.results: dict[int, dict] = {}
        self.timelines: list[dict] = []
        self.shot_dir = Path(args.shots) if args.shots else None
        if self.shot_dir:
            self.shot_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(args.server_log or tempfile.mkdtemp(prefix="gbs-bench-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ---- waiting -------------------------------------------------------------------------------------------
    def wait(self, page, label: str, t0: float, *, charts: int = 0, iframes: int = 0, h1_not: str = "",
             head_has: tuple[str, ...] = (), plot_has: str = "", cap: float | None = None,
             target: float | None = None) -> float:
        """Poll the page until the work is done; seconds since ``t0``. Raises Capped past ``cap``."""
        cap = self.args.cap if cap is None else cap
        want = {"charts": charts, "iframes": iframes, "h1_not": h1_not, "head_has": list(head_has),
                "plot_has": plot_has}
        events: list[dict] = []
        last = None
        shot_taken = False
        while True:
            try:
                r = page.evaluate(PROBE, want)
            except Exception as exc:  # noqa: BLE001 - a frame swapped under the probe: look again
                r = {"ready": False, "state": f"probe error {type(exc).__name__}", "busy": [], "h1": "", "status": "",
                     "head": "", "title0": "", "canvas": None}
            now = time.perf_counter()
            sig = (r["state"], tuple(r["busy"]), r["h1"], r["head"], r["title0"], r["canvas"], r["status"])
            if sig != last:
                events.append({"t": round(now - t0, 3), **{k: r[k] for k in
                               ("state", "busy", "h1", "head", "title0", "canvas", "status")}})
                last = sig
            if r["ready"]:
                elapsed = now - t0
                self.timelines.append({"label": label, "seconds": elapsed, "target": target, "events": events})
                return elapsed
            if self.shot_dir and target and not shot_taken and now - t0 > target:
                page.screenshot(path=str(self.shot_dir / f"{label.replace(' ', '_').replace('/', '_')}.png"))
                shot_taken = True
            if now - t0 > cap:
                self.timelines.append({"label": label, "seconds": None, "target": target, "events": events})
                raise Capped(f"{label}: not done after {cap:.0f} s")
            time.sleep(0.03)

    # ---- server --------------------------------------------------------------------------------------------
    def start(self, cache_dir: str, name: str):
        port = free_port()
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        env_bg = os.environ.get("GBS_BACKGROUND")
        if env_bg is not None:
            print(f"note: GBS_BACKGROUND={env_bg} is set in the environment", flush=True)
        t0 = time.perf_counter()
        proc = start_server(port, cache_dir, log)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        return proc, log, url, t0, time.perf_counter() - t0

    @staticmethod
    def stop(proc, log) -> None:
        stop_server(proc)
        log.close()

    # ---- rows 1, 2, 6 ----------------------------------------------------------------------------------------
    def walk(self, page, url: str, t0: float, tag: str) -> list[tuple[str, float, float | None]]:
        """Home, then every page through the sidebar links; (page, seconds since t0 when rendered, seconds for this
        page alone) per page. ``None`` seconds: capped."""
        page.goto(url, wait_until="domcontentloaded")
        out = []
        try:
            home = self.wait(page, f"{tag} home", t0, target=ROWS[1][1] if tag == "cold" else None)
            out.append(("home", home, home))
        except Capped as exc:
            print(f"  {exc}", flush=True)
            out.append(("home", None, None))
            return out
        prev_h1 = page.locator("h1").first.text_content().strip()
        for path, _, charts, iframes in PAGES[1:]:
            link = page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]')
            ts = time.perf_counter()
            link.click()
            try:
                self.wait(page, f"{tag} {path}", ts, charts=charts, iframes=iframes, h1_not=prev_h1,
                          target=ROWS[2][1] if tag == "cold" else None)
                done = time.perf_counter()
                out.append((path, done - t0, done - ts))
            except Capped as exc:
                print(f"  {exc}", flush=True)
                out.append((path, None, None))
            prev_h1 = page.locator("h1").first.text_content().strip()
        return out

    def rows_1_2_6(self, browser, rows: set[int]) -> None:
        cache_dir = tempfile.mkdtemp(prefix="gbs-bench-dashboard-a-")
        print(f"[rows 1, 2, 6] disk cache {cache_dir}", flush=True)
        proc, log, url, t0, up = self.start(cache_dir, "cold_walk")
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        try:
            walked = self.walk(page, url, t0, "cold")
        finally:
            context.close()
            self.stop(proc, log)
        home = walked[0][1]
        self.results[1] = {"value": home, "load": loadavg(),
                           "note": f"server healthy after {up:.1f} s"}
        print(f"row 1: home rendered {_fmt(home)} s after `streamlit run` (healthy after {up:.1f} s); "
              f"load {self.results[1]['load']}", flush=True)
        per = [(p, s) for p, _, s in walked[1:]]
        if per:
            worst = None if any(s is None for _, s in per) else max(s for _, s in per)
            slowest = max(per, key=lambda x: float("inf") if x[1] is None else x[1])[0]
            self.results[2] = {"value": worst, "load": loadavg(),
                               "note": "; ".join(f"{p} {_fmt(s)}" for p, s in per) + f" (slowest: {slowest})"}
            print(f"row 2: per page {self.results[2]['note']}; load {self.results[2]['load']}", flush=True)
        if 6 in rows:
            proc, log, url, t0, up = self.start(cache_dir, "warm_walk")
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            try:
                walked = self.walk(page, url, t0, "warm")
            finally:
                context.close()
                self.stop(proc, log)
            total = None if any(s is None for _, s, _ in walked) else walked[-1][1]
            self.results[6] = {"value": total, "load": loadavg(),
                               "note": f"healthy {up:.1f} s; per page " + ", ".join(
                                   f"{p or 'home'} {_fmt(s)}" for p, _, s in walked)}
            print(f"row 6: {_fmt(total)} s; {self.results[6]['note']}; load {self.results[6]['load']}", flush=True)

    # ---- rows 3, 4, 5 ----------------------------------------------------------------------------------------
    def rows_3_4_5(self, browser, rows: set[int]) -> None:
        cache_dir = tempfile.mkdtemp(prefix="gbs-bench-dashboard-b-")
        print(f"[rows 3, 4, 5] disk cache {cache_dir}", flush=True)
        proc, log, url, t0, up = self.start(cache_dir, "sample_graph")
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        try:
            page.goto(url, wait_until="domcontentloaded")
            self.wait(page, "B home", t0)
            ts = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"] a[href$="/Sample_graph"]').click()
            first = self.wait(page, "B Sample_graph first render", ts, charts=1, iframes=1, h1_not="GBS Explorer")
            print(f"  Sample graph first rendered {first:.1f} s after its link was clicked "
                  f"({time.perf_counter() - t0:.1f} s after `streamlit run`)", flush=True)
            if 3 in rows:
                self.row_3(page)
            if 4 in rows or 5 in rows:
                self.rows_4_5(page, rows)
        finally:
            context.close()
            self.stop(proc, log)

    def _status(self, page) -> str:
        return page.evaluate(PROBE, {"charts": 0, "iframes": 0})["status"]

    def row_3(self, page) -> None:
        page.wait_for_timeout(self.args.settle * 1000)
        # the layer slider's thumb is a (visually hidden) range input: min/max/value are layer indices
        thumb = page.locator('[data-testid="stMain"] [data-testid="stSlider"] input[type="range"]').first
        n = int(thumb.get_attribute("max")) - int(thumb.get_attribute("min")) + 1
        at = int(thumb.input_value())
        visited = {thumb.get_attribute("aria-valuetext")}
        targets = [0, n // 2, n // 4]
        print(f"  {n} layers; on {sorted(visited)} (index {at}); after {self.args.settle:.0f} s: "
              f"{self._status(page) or 'no preparation line'}", flush=True)
        times, notes = [], []
        for target in targets:
            if target == at:
                continue
            keys = ["Home"] if target == 0 else ["End"] if target == n - 1 else (
                ["ArrowRight"] * (target - at) if target > at else ["ArrowLeft"] * (at - target))
            bg = self._status(page)
            thumb.focus()
            for key in keys[:-1]:
                page.keyboard.press(key)
            t0 = time.perf_counter()
            page.keyboard.press(keys[-1])
            layer = thumb.get_attribute("aria-valuetext")
            if layer in visited:
                print(f"  warning: {layer} was visited already", flush=True)
            try:
                s = self.wait(page, f"slider to {layer}", t0, charts=1, iframes=1, head_has=(f": {layer} ",),
                              plot_has=layer, target=ROWS[3][1], cap=min(self.args.cap, 120))
            except Capped as exc:
                print(f"  {exc}", flush=True)
                s = None
                wait_rendered(page, 1, 1)  # let it finish before the next move
            graph_at = _first(self.timelines[-1]["events"], f": {layer} ")
            times.append(s)
            notes.append(f"{layer} {_fmt(s, 2)} (graph shown {_fmt(graph_at, 2)}; bg before: {bg or '-'})")
            print(f"  slider -> {layer} (index {target}, keys {keys[-1]} x{len(keys)}): {_fmt(s, 2)} s, graph legend "
                  f"at {_fmt(graph_at, 2)} s; background before the move: {bg or '-'}; load {loadavg()}", flush=True)
            visited.add(layer)
            at = target
            page.wait_for_timeout(500)
        done = [t for t in times if t is not None]
        capped = len(done) < len(times)
        self.results[3] = {"value": None if capped or not done else statistics.median(done),
                           "max": None if capped or not done else max(done), "load": loadavg(),
                           "note": "; ".join(notes)}

    def _number(self, page, label: str, value: int, expect: str, name: str, row: int | None) -> float | None:
        box = page.locator('[data-testid="stSidebar"]').get_by_label(label, exact=True)
        box.fill(str(value))
        t0 = time.perf_counter()
        box.press("Enter")
        try:
            return self.wait(page, name, t0, charts=1, iframes=1, head_has=(expect,),
                             target=ROWS[row][1] if row else None)
        except Capped as exc:
            print(f"  {exc}", flush=True)
            wait_rendered(page, 1, 1)
            return None

    def rows_4_5(self, page, rows: set[int]) -> None:
        if 4 in rows:
            s = self._number(page, "k (modularity)", 5, "(k = 5)", "k 3 -> 5", 4)
            self.results[4] = {"value": s, "load": loadavg(), "note": f"bg after: {self._status(page) or '-'}"}
            print(f"row 4: k 3 -> 5 rendered in {_fmt(s, 2)} s; load {self.results[4]['load']}", flush=True)
            page.wait_for_timeout(500)
            back = self._number(page, "k (modularity)", 3, "(k = 3)", "k 5 -> 3 (untimed)", None)
            print(f"  k back to 3: {_fmt(back, 2)} s (not a row)", flush=True)
            page.wait_for_timeout(500)
        if 5 in rows:
            s = self._number(page, "Samples N", 300, "300 samples", "N 500 -> 300", 5)
            self.results[5] = {"value": s, "load": loadavg(), "note": f"bg after: {self._status(page) or '-'}"}
            print(f"row 5: N 500 -> 300 rendered in {_fmt(s, 2)} s; load {self.results[5]['load']}", flush=True)

    # ---- report --------------------------------------------------------------------------------------------
    def table(self) -> str:
        lines = ["| # | measurement | target | measured | load avg (1/5/15 min) | details |",
                 "|---|---|---|---|---|---|"]
        for row, (what, target) in ROWS.items():
            if row not in self.results:
                continue
            r = self.results[row]
            cap = f"> cap ({self.args.cap:.0f} s)"
            if row == 3:
                measured = (f"median {r['value']:.2f} s; max {r['max']:.2f} s" if r["value"] is not None
                            else f"{cap} (at least one move)")
            else:
                measured = f"{r['value']:.2f} s" if r["value"] is not None else cap
            worst = r.get("max", r["value"])
            verdict = "" if worst is None else (" ok" if worst < target else " over")
            if row == 3:
                what = what.replace("30 s", f"{self.args.settle:g} s")
            note = r["note"].replace("|", "\\|")  # a sidebar line may hold several jobs, joined by " | "
            lines.append(f"| {row} | {what} | < {target:g} s | {measured}{verdict} | {r['load']} | {note} |")
        return "\n".join(lines)


def _fmt(s: float | None, digits: int = 1) -> str:
    return "capped" if s is None else f"{s:.{digits}f}"


def _first(events: list[dict], needle: str) -> float | None:
    """When the graph legend first held ``needle``."""
    return next((e["t"] for e in events if needle in e["head"]), None)


def _phase(e: dict) -> str:
    """What the page showed, without the spinner's running clock or the progress bar's per-item suffix."""
    if e["busy"]:
        items = [re.sub(r" \(\d+(\.\d+)? seconds\)", "", re.sub(r'^(Progress "[^:"]*):[^"]*', r"\1", b))
                 for b in e["busy"]]
        return " + ".join(f"{b} x{items.count(b)}" if items.count(b) > 1 else b for b in dict.fromkeys(items))
    return f"script {e['state']}, no spinner"


def phases(events: list[dict], end: float | None) -> str:
    """Consecutive events with the same :func:`_phase` as ``label start-end``; ``[graph: title]`` where the graph
    iframe's legend changed (the new graph arrived on the page)."""
    out: list[list] = []
    graph = None
    for e in events:
        label = _phase(e)
        title = (e.get("head") or "").split("0123456789")[0].strip() or "none"
        if graph is not None and title != graph:
            label = f"[graph: {title}] {label}"
        graph = title
        if out and out[-1][0] == label:
            continue
        if out:
            out[-1][2] = e["t"]
        out.append([label, e["t"], None])
    if out:
        out[-1][2] = end
    return "; ".join(f"{label} {a:.1f}-{_fmt(b)}" for label, a, b in out)


# ---- the earlier measurements (--legacy) ------------------------------------------------------------------------
def walk_all_pages(browser, url: str) -> list[float]:
    """Open the home page, then every page through the sidebar links (one session, as a user would); seconds from
    the start until each page is rendered, in ``PAGES`` order."""
    context = browser.new_context(viewport=VIEWPORT)
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


def slider_times(browser, cache_dir: str, repeats: int) -> list[float]:
    """Seconds from a slider key press to the new graph drawn, between two layers that were both drawn before."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(os.devnull, "w") as log:
        proc = start_server(port, cache_dir, log)
        try:
            wait_healthy(url, proc)
            context = browser.new_context(viewport=VIEWPORT)
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


def legacy(browser, repeats: int) -> None:
    cache_dir = tempfile.mkdtemp(prefix="gbs-bench-dashboard-")
    _report("cold disk cache", *run_server_walk(browser, cache_dir))
    _report("warm disk cache (restart)", *run_server_walk(browser, cache_dir))
    slider = slider_times(browser, cache_dir, repeats)
    print(
        f"layer slider to an already drawn layer: median {statistics.median(slider):.2f} s, "
        f"max {max(slider):.2f} s over {len(slider)} moves ({', '.join(f'{t:.2f}' for t in slider)})", flush=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,2,3,4,5,6", help="comma-separated rows to run (default: all six)")
    parser.add_argument("--settle", type=float, default=30.0, help="row 3: seconds to wait after the first render")
    parser.add_argument("--cap", type=float, default=180.0, help="seconds one wait may take before it is '> cap'")
    parser.add_argument("--table", help="also write the markdown table to this file")
    parser.add_argument("--timelines", action="store_true", help="print every wait's timeline (default: slow ones)")
    parser.add_argument("--timeline-json", help="write every wait's timeline to this JSON file")
    parser.add_argument("--shots", help="folder for a screenshot of each wait that passes its row's target")
    parser.add_argument("--server-log", help="folder for the servers' logs (default: a temp folder)")
    parser.add_argument("--legacy", action="store_true", help="also run the earlier cold/warm/slider measurements")
    parser.add_argument("--repeats", type=int, default=6, help="--legacy: slider moves between drawn layers")
    args = parser.parse_args()
    rows = {int(r) for r in args.rows.split(",") if r.strip()}
    if not rows <= set(ROWS):
        parser.error(f"--rows takes numbers from {sorted(ROWS)}")
    from playwright.sync_api import sync_playwright

    bench = Bench(args)
    started = time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {chromium}; "
              f"code at {ROOT}; nice {os.nice(0)}; load {loadavg()}; server logs in {bench.log_dir}", flush=True)
        if rows & {1, 2, 6}:
            bench.rows_1_2_6(browser, rows)
        if rows & {3, 4, 5}:
            bench.rows_3_4_5(browser, rows)
        if args.legacy:
            legacy(browser, args.repeats)
        browser.close()
    for tl in bench.timelines:  # what the page showed while a wait ran past its row's target
        if args.timelines or tl["seconds"] is None or (tl["target"] and tl["seconds"] > tl["target"]):
            print(f"\n{tl['label']} ({_fmt(tl['seconds'], 2)} s, target {tl['target']}): "
                  f"{phases(tl['events'], tl['seconds'])}")
            if args.timelines:
                for e in tl["events"]:
                    print(f"  {e['t']:7.2f}  {e['state']}; busy={e['busy'] or '-'}; h1={e['h1'][:30]!r}; "
                          f"graph={e['head'][:50]!r}; chart={e['title0']!r}; canvas={e['canvas']}; "
                          f"bg={e['status'] or '-'}")
    if args.timeline_json:
        Path(args.timeline_json).write_text(json.dumps(bench.timelines, indent=1))
    table = bench.table()
    print(f"\nwhole run {time.perf_counter() - started:.0f} s\n\n{table}")
    if args.table:
        Path(args.table).write_text(table + "\n")


if __name__ == "__main__":
    main()
