"""Static figures keep their legends and titles whole (issue 13): every figure type, drawn with the longest names the
zoo and the experiments produce, is written as SVG through kaleido at half width (450 px, a half-width chart of the
app) and at the export width (900 px); Chromium then measures the drawn text, and every legend entry, title and axis
title must lie inside the image, with the legend clear of the x-axis title. Needs Debian's Chromium (``scripts/setup.sh
dev``); skipped without it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbs_core import export, figures
from gbs_core.zoo.registry import list_zoo

pytestmark = [pytest.mark.skipif(export.chromium_path() is None, reason="no Chromium on this machine")]

LONGEST_MODEL = max((e.name for e in list_zoo(include_checkpoints=True)), key=len)
NAMES = [LONGEST_MODEL, f"{LONGEST_MODEL} (checkpoint)", "timm:vit_small_patch16_224"]
LAYERS = [f"layer{i // 3 + 1}.{i % 3}.conv2" for i in range(9)]


def _curve(name):
    n = len(LAYERS)
    return pd.DataFrame({"depth": range(1, n + 1), "normalized_depth": np.linspace(0, 1, n), "layer": LAYERS,
                         "q": np.linspace(0.1, 0.8, n), "q_std": 0.02, "dq": [np.nan] + [0.08] * (n - 1),
                         "prunable": [False] * (n - 2) + [True, True], "kind": [""] * (n - 2) + ["plateau",
                                                                                                  "degradation"],
                         "model": name, "same_class_fraction": 0.5, "two_classes_fraction": 0.3,
                         "all_different_fraction": 0.2})


def _figures():
    M = np.linspace(0, 1, len(LAYERS) ** 2).reshape(len(LAYERS), -1)
    dyn = pd.DataFrame([{"checkpoint": f"epoch {e}", "layer": layer, "q": 0.1 * e, "accuracy": 0.5}
                        for e in (0, 10, 40) for layer in LAYERS])
    adv = pd.DataFrame([{"attack": a, "layer": layer, "q": 0.3, "accuracy": 0.4}
                        for a in ("clean", "PGD eps=0.03 (40 steps)", "Carlini-Wagner confidence 0")
                        for layer in LAYERS])
    prune = pd.DataFrame({"variant": ["original", "flagged", "control"], "seed": [0, 0, 1],
                          "accuracy_before_finetune": [0.9, 0.5, 0.4], "accuracy_after_finetune": [0.9, 0.85, 0.8],
                          "params_reduction_pct": [0, 30, 30], "flops_reduction_pct": [0, 25, 25]})
    sanity = pd.DataFrame({"index": ["linear CKA", "debiased linear CKA", "RBF CKA (sigma 0.4)"],
                           "ours_pct": [90, 80, 70], "paper_pct": ["97.4", "-", "94.4"]})
    transfer = pd.DataFrame({"source": NAMES, "gbs_label": [0.1, 0.2, 0.3], "probe_accuracy": [0.5, 0.6, 0.7],
                             "finetune_accuracy": [0.6, 0.7, 0.8]})
    return {
        "modularity": figures.modularity_chart([_curve(n) for n in NAMES], normalized=True, spread=True),
        "motifs": figures.motif_bars(_curve(NAMES[0]), title=f"{NAMES[0]}: triangle types per layer"),
        "motif_vs_modularity": figures.motif_vs_modularity([_curve(n) for n in NAMES], [_curve(n) for n in NAMES],
                                                           normalized=True),
        "similarity": figures.similarity_heatmap(M, LAYERS, LAYERS, title=f"CKA (linear): {NAMES[0]} vs {NAMES[1]}",
                                                 row_title=NAMES[0], col_title=NAMES[1]),
        "identification": figures.identification_heatmap(M, LAYERS, np.arange(len(LAYERS)), title="linear CKA"),
        "dynamics_heatmap": figures.dynamics_heatmap(np.ones((3, len(LAYERS))), ["epoch 0", "epoch 10", "epoch 40"],
                                                     [0.1, 0.5, 0.9], LAYERS, title="Q over training",
                                                     metric_label="Q"),
        "dynamics_curves": figures.dynamics_curves(dyn, ["epoch 0", "epoch 10", "epoch 40"]),
        "adversarial": figures.adversarial_curves(adv),
        "pruning": figures.pruning_figure(prune, title=f"Pruning: {NAMES[0]}"),
        "sanity": figures.sanity_bar_figure(sanity),
        "transfer": figures.transfer_figure(transfer, title="Transfer to the plain digits"),
    }


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """``{(figure, width): (svg width, svg height, {part: [boxes]})}`` measured in Chromium."""
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("svg")
    figs = _figures()
    paths = {}
    for width in (450, 900):
        for name, fig in figs.items():
            figures.stamp(fig, figures.settings_text(data="digits-noise", n=500, seed=0, k=3, motif_k=5))
            paths[(name, width)] = export.write_static({f"{name}_{width}": fig}, folder, ["svg"], width=width)[0]
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=export.chromium_path(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        for key, path in paths.items():
            page.set_content(f"<html><body style='margin:0'>{path.read_text()}</body></html>")
            out[key] = page.evaluate("""() => {
                const svg = document.querySelector('svg.main-svg');
                const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
                const all = sel => Array.from(document.querySelectorAll(sel)).filter(e => e.textContent.trim())
                                        .map(box);
                return [svg.width.baseVal.value, svg.height.baseVal.value, {
                    legend: all('.legend .legendtext'), title: all('.gtitle'), subtitle: all('.gtitle-subtitle'),
                    xtitle: all('.g-xtitle'), ytitle: all('.g-ytitle')}];
            }""")
        browser.close()
    return out


@pytest.mark.parametrize("width", [450, 900])
@pytest.mark.parametrize("name", list(_figures()))
def test_text_lies_inside_the_image(measured, name, width):
    W, H, parts = measured[(name, width)]
    assert parts["title"], "every figure has a title"
    for part, boxes in parts.items():
        for left, top, right, bottom in boxes:
            assert left >= -1 and top >= -1 and right <= W + 1 and bottom <= H + 1, (part, (left, top, right, bottom))


@pytest.mark.parametrize("width", [450, 900])
@pytest.mark.parametrize("name", list(_figures()))
def test_legend_is_clear_of_the_axis_title(measured, name, width):
    _, _, parts = measured[(name, width)]
    for lx0, ly0, lx1, ly1 in parts["legend"]:
        for tx0, ty0, tx1, ty1 in parts["xtitle"]:
            overlap = min(lx1, tx1) - max(lx0, tx0) > 1 and min(ly1, ty1) - max(ly0, ty0) > 1
            assert not overlap, ((lx0, ly0, lx1, ly1), (tx0, ty0, tx1, ty1))


def test_the_longest_names_are_in_the_legend(measured):
    _, _, parts = measured[("modularity", 450)]
    assert len(parts["legend"]) == len(NAMES) + 2  # three models, plateau and degradation
