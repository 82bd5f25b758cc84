"""The dashboard in a real browser: ``streamlit run`` on a free loopback port, driven by Debian's Chromium.

For every page: wait until the script has finished, check that the plotly charts hold traces and that the graph
iframe drew its canvas, that no error or exception box is shown, and that no request left 127.0.0.1; save a
screenshot to ``artifacts/screenshots/``. Per page: the home page's cards, navigation ("Home" first) and links to
every page; the graph's download is a self-contained file; Pruning offers to start a run; Sanity check shows its
tables; Training dynamics shows ResNet-20's epochs; Adversarial shows the clean curve and four attacked ones. A second test
uploads a torchvision resnet18 state_dict (its 1000-class ImageNet head) through the sidebar, on an image folder of
36 images, and checks its card. Requires ``/usr/bin/chromium`` (``scripts/setup.sh dev`` installs it;
never ``playwright install``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.graph_view import external_references  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# (url path, screenshot name, plotly charts expected, graph iframes expected) for the default workspace
PAGES = [
    ("", "home", 0, 0),
    ("Sample_graph", "sample_graph", 1, 1),
    ("Modularity", "modularity", 1, 0),
    ("Similarity", "similarity", 2, 0),
    ("Motifs", "motifs", 2, 0),
    ("Pruning", "pruning", 0, 0),  # a fresh cache holds no fine-tuning run: the page offers to start one
    ("Sanity_check", "sanity_check", 2, 0),
    ("Training_dynamics", "training_dynamics", 4, 0),  # heatmap, overlaid curves, layer difference, CKA
    ("Adversarial", "adversarial", 3, 0),  # curves, layer difference, CKA
    ("Stitching", "stitching", 0, 0),  # a fresh cache holds no trained stitch: the page offers to train them
    ("Transfer", "transfer", 1, 0),  # score vs accuracy scatter
    ("Report", "report", 0, 0),  # the sections to pick and the button
]
ANALYSIS_PAGES = 5  # home and pages 1-4: the pages the speed targets were first measured on
LOCAL_SCHEMES = {"data", "blob", "about"}
SVG_TEXTS = "els => els.map(e => e.textContent)"  # plotly draws text as SVG, which has no innerText

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def refuse_off_machine(context, *, schemes=tuple(LOCAL_SCHEMES), hosts=("127.0.0.1",)) -> list[str]:
    """Let the context's requests through only to ``schemes`` and ``hosts``; the others are aborted and listed in the
    returned list."""
    refused: list[str] = []

    def guard(route):
        url = urlparse(route.request.url)
        if url.scheme in schemes or url.hostname in hosts:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return refused


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout} s")


def start_server(port: int, cache_dir: str, log) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:``port`` with its own disk cache folder."""
    env = {**os.environ, "GBS_CACHE_DIR": cache_dir}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh dev (apt-get install chromium)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    with open(log_path, "w") as log:
        proc = start_server(port, tempfile.mkdtemp(prefix="gbs-browser-cache-"), log)
        try:
            wait_healthy(url, proc)
            yield url
        finally:
            stop_server(proc)
    print(log_path.read_text()[-3000:])


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def wait_rendered(page, charts: int, iframes: int, timeout_ms: int = 240_000) -> None:
    """Until the script has run to the end, nothing is spinning, and the expected charts and graphs are drawn."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        """([charts, iframes]) => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
            // spinners, progress bars and skeleton placeholders all mean a run is still filling the page
            if (document.querySelector('[data-testid="stSpinner"], [data-testid="stProgress"], '
                + '[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')) return false;
            if (!document.querySelector('h1')) return false;
            const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
            if (plots.length < charts || plots.some(p => !(p._fullData && p._fullData.length))) return false;
            return document.querySelectorAll('iframe').length >= iframes;
        }""",
        arg=[charts, iframes],
        timeout=timeout_ms,
        polling=250,
    )


def graph_canvas_drawn(page) -> bool:
    """Whether every graph iframe holds a vis-network canvas with coloured (non-white) pixels."""
    for frame in page.frames[1:]:
        frame.wait_for_selector("#mynetwork canvas", timeout=60_000)
        frame.wait_for_function(
            """() => {
                const c = document.querySelector('#mynetwork canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let coloured = 0;
                for (let i = 0; i < d.length; i += 16) if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200)) coloured++;
                return coloured > 200;
            }""",
            timeout=60_000,
            polling=250,
        )
        # pyvis overlays a progress bar while the layout settles; wait until it is gone (for a clean screenshot)
        frame.wait_for_function(
            """() => {
                const bar = document.getElementById('loadingBar');
                return !bar || getComputedStyle(bar).display === 'none' || getComputedStyle(bar).opacity === '0';
            }""",
            timeout=60_000,
            polling=250,
        )
    return len(page.frames) > 1


def check_page(page, name: str) -> None:
    """What a page shows beyond charts and graphs, with the default workspace and a fresh disk cache."""
    if name == "home":
        page.locator('[data-testid="stMetric"]').nth(3).wait_for(timeout=120_000)  # the model card's four numbers
        assert page.locator('[data-testid="stMetric"]').count() == 4
        nav = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
        assert [t.strip().splitlines()[-1] for t in nav] == [  # a material icon's name comes first
            "Home",
            "Sample graph",
            "Modularity",
            "Similarity",
            "Motifs",
            "Pruning",
            "Sanity check",
            "Training dynamics",
            "Adversarial",
            "Stitching",
            "Transfer",
            "Report",
        ], nav
        links = page.locator('[data-testid="stMain"] [data-testid="stPageLink"] a')
        assert [h.split("/")[-1] for h in links.evaluate_all("as => as.map(a => a.href)")] == [p for p, *_ in PAGES[1:]]
    elif name == "sample_graph":
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download graph (HTML)").click()
        html = Path(download.value.path()).read_text(encoding="utf-8")
        assert download.value.suggested_filename.endswith(".html")
        assert external_references(html) == [] and "vis.Network" in html  # vis-network inline, nothing linked
        assert html.count("new vis.DataSet") == 2 and '"id": 499' in html  # nodes and edges of all 500 samples
    elif name == "pruning":
        info = page.locator('[data-testid="stAlertContentInfo"]').all_inner_texts()
        assert any("not in the cache" in t for t in info), info
        assert page.get_by_role("button", name="Run pruning").is_visible()
    elif name == "sanity_check":
        assert page.locator('[data-testid="stDataFrame"]').count() >= 2  # accuracy table and per-layer table
    elif name == "training_dynamics":
        rows = page.locator(".js-plotly-plot").first.locator(".ytick text").evaluate_all(SVG_TEXTS)
        epochs = sorted(int(r.split(" ·")[0].removeprefix("epoch ")) for r in rows)
        assert epochs == [0, 1, 2, 4, 8, 16, 32, 40], rows  # ResNet-20's checkpoints, each with its accuracy
    elif name == "transfer":
        legend = page.locator(".js-plotly-plot").first.locator(".legendtext").evaluate_all(SVG_TEXTS)
        assert legend == ["linear probe", "fine-tuned"], legend
    elif name == "stitching":
        assert page.get_by_role("button", name="Train the stitches").is_visible()
    elif name == "adversarial":
        legend = page.locator(".js-plotly-plot").first.locator(".legendtext").evaluate_all(SVG_TEXTS)
        assert legend[0].startswith("clean (accuracy") and len(legend) == 5, legend  # clean + FGSM, PGD x 2 eps


def test_every_page_renders_offline_without_errors(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1500, "height": 2000})
    off_machine = refuse_off_machine(context)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        for path, name, charts, iframes in PAGES:
            page.goto(f"{server}/{path}", wait_until="domcontentloaded")
            wait_rendered(page, charts, iframes)
            if iframes:
                assert graph_canvas_drawn(page), f"{name}: the graph iframe drew nothing"
            heights = page.eval_on_selector_all(
                ".js-plotly-plot", "ps => ps.map(p => p.getBoundingClientRect().height)"
            )
            assert len(heights) == charts and all(h > 100 for h in heights), (name, heights)
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: exception box"
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, f"{name}: error box"
            check_page(page, name)
        assert off_machine == [], f"requests left the machine: {off_machine[:5]}"
        assert page_errors == [], page_errors
    finally:
        context.close()


def test_uploading_a_torchvision_checkpoint_analyses_an_image_folder(server, browser, byo):
    """A researcher's own checkpoint and data: the resnet18 state_dict joins the selection (head unused, accuracy
    n/a), N = 500 is clamped to the folder's 36 images, and the Modularity page draws its 9 layers."""
    context = browser.new_context(viewport={"width": 1500, "height": 2000})
    refuse_off_machine(context)
    page = context.new_page()
    try:
        page.goto(f"{server}/?data=image_folder&path={byo / 'folder'}&zoo=", wait_until="domcontentloaded")
        wait_rendered(page, 0, 0)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Your checkpoint (state_dict or .safetensors)").click()
        combo = sidebar.get_by_role("combobox", name="Architecture it was saved from")
        combo.click()
        combo.fill("resnet18")
        page.get_by_role("option", name="resnet18", exact=True).click()
        sidebar.locator('input[type="file"]').set_input_files(str(byo / "resnet18.pth"))
        add = sidebar.get_by_role("button", name="Add checkpoint")
        page.wait_for_function("b => !b.disabled", arg=add.element_handle(), timeout=120_000)
        add.click()
        page.get_by_text("Layers analysed").wait_for(timeout=240_000)
        wait_rendered(page, 0, 0)
        metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
        assert any(m.startswith("Layers analysed") and m.endswith("9") for m in metrics), metrics
        assert any("not applicable" in m and m.endswith("n/a") for m in metrics), metrics
        side = sidebar.inner_text()
        assert "all 36 are used" in side and "1000 classes" in side and "resized to 32x32" in side, side[-2000:]
        page.screenshot(path=str(SHOTS / "own_checkpoint_home.png"), full_page=True)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Modularity").click()
        wait_rendered(page, 1, 0)
        ticks = page.locator(".js-plotly-plot").first.locator(".xtick text").evaluate_all(SVG_TEXTS)
        assert len(ticks) >= 1
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        page.screenshot(path=str(SHOTS / "own_checkpoint_modularity.png"), full_page=True)
    finally:
        context.close()


def test_a_report_made_on_home_opens_offline_with_every_figure_drawn(server, browser, tmp_path):
    """Home's button makes the report of the default workspace; the downloaded file, opened from disk with every
    request off the machine refused, draws each of its figures (plotly inlined once) and asks for nothing."""
    context = browser.new_context(viewport={"width": 1300, "height": 1800}, accept_downloads=True)
    page = context.new_page()
    try:
        page.goto(server, wait_until="domcontentloaded")
        wait_rendered(page, 0, 0)
        page.get_by_role("button", name="Make a report of this workspace").click()
        button = page.get_by_role("button", name="Download the report (HTML)")
        button.wait_for(timeout=300_000)
        with page.expect_download(timeout=120_000) as download:
            button.click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        assert path.name.startswith("report_digits-noise_n500_seed0_k3") and path.suffix == ".html"
    finally:
        context.close()
    offline = browser.new_context(viewport={"width": 1300, "height": 1800})
    requests = refuse_off_machine(offline, schemes=("file", *LOCAL_SCHEMES), hosts=())
    view = offline.new_page()
    errors: list[str] = []
    view.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        view.goto(path.as_uri(), wait_until="load")
        expected = view.locator("div.figure").count()
        assert expected >= 8  # modularity, 2 heatmaps, 2 motif charts, 3 graphs at least
        view.wait_for_function(
            """n => { const ps = Array.from(document.querySelectorAll('.js-plotly-plot'));
                      return ps.length === n && ps.every(p => p._fullData && p._fullData.length
                                                          && p.querySelector('.main-svg')); }""",
            arg=expected, timeout=120_000, polling=250)
        heights = view.eval_on_selector_all(".js-plotly-plot", "ps => ps.map(p => p.getBoundingClientRect().height)")
        assert all(h > 200 for h in heights), heights
        headings = view.locator("h2").all_inner_texts()
        assert headings[:5] == ["Settings", "Modularity over depth", "Layer similarity", "Triangle motifs",
                                "Sample graphs"], headings
        assert "resnet56" in view.locator("table").nth(1).inner_text()
        view.screenshot(path=str(SHOTS / "report.png"), full_page=False)
        assert requests == [] and errors == [], (requests[:5], errors)
    finally:
        offline.close()


def test_a_link_copied_from_a_page_reopens_it_as_it_was(server, browser):
    """Change the Similarity page's CKA variant in the browser; the address bar then holds it, and opening that
    address in a fresh context shows the same choice and chart."""
    context = browser.new_context(viewport={"width": 1500, "height": 1800})
    page = context.new_page()
    try:
        page.goto(f"{server}/Similarity", wait_until="domcontentloaded")
        wait_rendered(page, 2, 0)
        combo = page.get_by_role("combobox", name="CKA variant")
        combo.click()
        page.get_by_role("option", name="debiased linear", exact=True).click()
        page.wait_for_function("() => location.search.includes('sim_cka=')", timeout=60_000)
        wait_rendered(page, 2, 0)
        link = page.url
    finally:
        context.close()
    fresh = browser.new_context(viewport={"width": 1500, "height": 1800})
    page = fresh.new_page()
    try:
        page.goto(link, wait_until="domcontentloaded")
        wait_rendered(page, 2, 0)
        titles = page.locator(".js-plotly-plot .gtitle").evaluate_all(SVG_TEXTS)
        assert any(t.startswith("CKA (debiased linear)") for t in titles), titles
    finally:
        fresh.close()
