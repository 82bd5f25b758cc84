"""Every ``python -m gbs_core`` subcommand runs (click's CliRunner) and writes the files it promises."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from gbs_core.cli import parse_model_spec


def test_help_for_every_subcommand(run):
    for cmd in (["layers"], ["analyze"], ["prune"], ["sanity-check"], ["dynamics"], ["adversarial"], ["stitch"], ["zoo"],
                ["zoo", "list"],
                ["zoo", "train"]):
        out = run(*cmd, "--help").output
        assert "Usage:" in out and len(out.splitlines()) > 4, cmd


def test_parse_model_spec():
    assert parse_model_spec("resnet56").source == "zoo"
    tv = parse_model_spec("torchvision:resnet18:3")
    assert (tv.source, tv.name, tv.seed) == ("torchvision", "resnet18", 3)
    ck = parse_model_spec("checkpoint:tiny10:/tmp/w.pt")
    assert (ck.source, ck.name, ck.checkpoint) == ("checkpoint", "tiny10", "/tmp/w.pt")


def test_layers_writes_csv(run, tmp_path):
    res = run("layers", "tiny10-s0", "--out", str(tmp_path / "o"))
    df = pd.read_csv(tmp_path / "o" / "layers.csv")
    default = df[df["default"]]
    assert list(default["layer"]) == [f"features.{i}" for i in range(8)]
    assert list(default["removable"]) == [False, True, False, True, True, False, False, True]
    assert "4 removable" in res.output


def test_unknown_model_is_a_clean_error(run, tmp_path):
    res = run("layers", "no-such-model", "--out", str(tmp_path / "o"), ok=False)
    assert res.exit_code != 0 and "no zoo model named 'no-such-model'" in res.output


def test_analyze_writes_every_file(run, tmp_path):
    out = tmp_path / "a"
    run("analyze", "tiny10-s0", "--out", str(out), "--n-samples", "60", "--metrics", "linear_cka,gbs_dense",
        "--threshold", "0.03", "--html")
    for name in ["modularity.csv", "prunable.json", "similarity_linear_cka.csv", "similarity_gbs_dense.csv",
                 "motifs.csv", "summary.json", "figures.html"]:
        assert (out / name).is_file(), name
    mod = pd.read_csv(out / "modularity.csv")
    assert list(mod["layer"]) == [f"features.{i}" for i in range(8)] and mod["q"].between(-0.5, 1).all()
    prunable = json.loads((out / "prunable.json").read_text())
    assert [p["layer"] for p in prunable["layers"]] == list(mod.loc[mod["prunable"], "layer"])
    cka = pd.read_csv(out / "similarity_linear_cka.csv", index_col=0)
    assert cka.shape == (8, 8)
    assert all(abs(cka.iloc[i, i] - 1) < 1e-6 for i in range(8))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 60 and summary["metrics"] == ["linear_cka", "gbs_dense"]
    page = (out / "figures.html").read_text()
    assert page.count('class="figure"') == 4  # modularity, two heatmaps, motifs: one page, plotly inlined once
    assert page.count("Plotly.newPlot") == 4 and page.count("<script type=\"text/javascript\">/**") <= 1


def test_analyze_rejects_unknown_metric(run, tmp_path):
    res = run("analyze", "tiny10-s0", "--out", str(tmp_path / "a"), "--metrics", "cosine", ok=False)
    assert res.exit_code == 2 and "unknown metric" in res.output


def test_prune_writes_every_file(run, tmp_path):
    out = tmp_path / "p"
    res = run("prune", "tiny10-s0", "--out", str(out), "--epochs", "1", "--train-samples", "100",
              "--curve-samples", "60", "--threshold", "median", "--control-seeds", "0,1", "--html")
    for name in ["pruning.csv", "units.csv", "pruning.json", "figures.html"]:
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "pruning.csv")
    assert table["variant"].iloc[0] == "original"
    units = pd.read_csv(out / "units.csv")
    assert len(units) == 8
    removed = set(units.loc[units["removed_in_pruned_model"], "layer"])
    assert removed <= set(units.loc[units["flagged"] & units["removable"], "layer"])
    full = json.loads((out / "pruning.json").read_text())
    assert full["settings"]["finetune"]["epochs"] == 1 and full["settings"]["threshold_rule"] == "median"
    if full["flagged"] is not None:
        # one control per seed, except that seeds drawing the same units share one (a small pool has few choices)
        plan = full["plan"]
        n_distinct = math.comb(len(plan["control_pool"]), len(plan["to_remove"]))
        assert list(table["variant"]) == ["original", "flagged"] + ["control"] * min(2, n_distinct)
        assert "flagged" in res.output
    assert "epoch 1/1" in res.output


def test_prune_with_the_gbs_criterion_flags_by_similarity_to_the_previous_layer(run, tmp_path):
    out = tmp_path / "g"
    run("prune", "resnet20", "--criterion", "gbs", "--out", str(out), "--epochs", "0", "--curve-samples", "60",
        "--control-seeds", "")
    units = pd.read_csv(out / "units.csv")
    assert "gbs_to_previous" in units.columns and "dq" not in units.columns
    sims = units["gbs_to_previous"].to_numpy()
    assert np.isnan(sims[0]) and np.all((sims[1:] > 0) & (sims[1:] <= 1 + 1e-9))
    full = json.loads((out / "pruning.json").read_text())
    assert full["settings"]["criterion"] == "gbs" and full["settings"]["threshold_rule"] == "median"
    thr = float(np.median(sims[1:]))
    assert full["plan"]["threshold"] == pytest.approx(thr)
    assert list(units.loc[units["flagged"], "layer"]) == list(units["layer"].iloc[1:][sims[1:] > thr])


def test_prune_rejects_bad_threshold(run, tmp_path):
    res = run("prune", "tiny10-s0", "--out", str(tmp_path / "p"), "--threshold", "lots", ok=False)
    assert res.exit_code == 2 and "neither a number nor 'median'" in res.output


def test_sanity_check_writes_every_file(run, tmp_path):
    out = tmp_path / "s"
    res = run("sanity-check", "--out", str(out), "--models", "tiny10-s0,tiny10-s1", "--n-samples", "60", "--pool",
              "--metrics", "linear_cka,pwcca", "--heatmap", "1,0", "--html")
    for name in ["sanity.csv", "sanity_per_layer.csv", "sanity_pairs.csv", "heatmap_linear_cka.csv",
                 "heatmap_pwcca.csv", "sanity.json", "figures.html"]:
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "sanity.csv")
    assert list(table["key"]) == ["linear_cka", "pwcca"] and table["ours_pct"].between(0, 100).all()
    assert table.loc[0, "paper_pct"] == 99.3
    heat = pd.read_csv(out / "heatmap_linear_cka.csv")
    assert len(heat) == 8 and set(heat.columns) >= {"layer", "argmax", "correct"}
    full = json.loads((out / "sanity.json").read_text())
    assert full["settings"]["pool"] is True and full["settings"]["n_samples"] == 60
    assert "CKA (linear)" in res.output


def test_zoo_list_and_train(run, tmp_path):
    res = run("zoo", "list", "--out", str(tmp_path / "z"))
    zoo = pd.read_csv(tmp_path / "z" / "zoo.csv")
    assert "resnet56" in set(zoo["name"]) and "tiny10-s9" in set(zoo["name"]) and "resnet56" in res.output
    run("zoo", "train", "--arch", "tiny10", "--seeds", "7", "--epochs", "1", "--out", str(tmp_path / "t"))
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert list(manifest["models"]) == ["tiny10-s7"] and (tmp_path / "t" / "digits-noise" / "tiny10-s7.pt").is_file()
    assert manifest["models"]["tiny10-s7"]["epochs"] == 1
    assert manifest["models"]["tiny10-s7"]["data"] == "digits-noise-v1-16px"
    run("zoo", "train", "--arch", "tiny10", "--seeds", "7", "--epochs", "1", "--data", "digits", "--out",
        str(tmp_path / "t"))
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert list(manifest["models"]) == ["tiny10-s7", "tiny10-s7-digits"]
    assert manifest["models"]["tiny10-s7-digits"]["file"] == "digits/tiny10-s7-digits.pt"


def test_zoo_list_shows_training_data_and_checkpoints(run):
    res = run("zoo", "list")
    lines = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert "digits in noise" in lines["resnet56"] and "plain digits" in lines["resnet56-digits"]
    assert "tiny10-s0-ep4" not in lines
    res = run("zoo", "list", "--checkpoints", "tiny10-s0")
    names = [line.split()[0] for line in res.output.splitlines() if line.strip()]
    assert names[0] == "tiny10-s0-ep0" and names[-1] == "tiny10-s0" and "tiny10-s0-ep16" in names


def test_sanity_check_names_the_families_for_an_unknown_one(run, tmp_path):
    res = run("sanity-check", "--family", "nope", "--out", str(tmp_path / "s"), ok=False)
    assert res.exit_code == 2
    assert "'nope' has 0 seeds" in res.output and "tiny10, tiny10x2, tiny10x4" in res.output


def test_dynamics_writes_every_file(run, tmp_path):
    out = tmp_path / "d"
    res = run("dynamics", "tiny10-s0", "--out", str(out), "--n-samples", "60", "--html")
    for name in ["dynamics.csv", "dynamics_q.csv", "dynamics_change.csv", "layer_difference.csv", "dynamics.json",
                 "figures.html"]:
        assert (out / name).is_file(), name
    q = pd.read_csv(out / "dynamics_q.csv")
    assert list(q["epoch"]) == [0, 1, 2, 4, 8, 16, 32, 60]
    assert list(q.columns[3:]) == [f"features.{i}" for i in range(8)]
    diff = pd.read_csv(out / "layer_difference.csv").set_index("layer")
    last = q.iloc[-1, 3:].astype(float)
    assert diff.loc["features.0", "features.7"] == pytest.approx(abs(last["features.7"] - last["features.0"]))
    assert len(pd.read_csv(out / "dynamics.csv")) == 8 * 8
    assert json.loads((out / "dynamics.json").read_text())["settings"]["n_samples"] == 60
    assert "tiny10-s0: accuracy" in res.output


def test_dynamics_of_a_model_without_checkpoints_is_a_clean_error(run, tmp_path):
    res = run("dynamics", "resnet56", "--out", str(tmp_path / "x"), ok=False)
    assert res.exit_code != 0 and "no training checkpoints" in res.output and "Traceback" not in res.output


def test_adversarial_writes_every_file(run, tmp_path):
    out = tmp_path / "a"
    res = run("adversarial", "tiny10-s0", "--out", str(out), "--n-samples", "60", "--attacks", "fgsm:0,fgsm:0.1",
              "--html")
    for name in ["adversarial.csv", "adversarial_curves.csv", "layer_difference.csv", "adversarial.json",
                 "figures.html"]:
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "adversarial.csv")
    assert list(table["attack"]) == ["clean", "FGSM eps=0", "FGSM eps=0.1"]
    assert table["accuracy"][1] == table["accuracy"][0] > table["accuracy"][2]
    assert "FGSM eps=0.1" in res.output


def test_adversarial_rejects_an_unknown_attack(run, tmp_path):
    res = run("adversarial", "tiny10-s0", "--out", str(tmp_path / "x"), "--attacks", "deepfool", ok=False)
    assert res.exit_code != 0 and "unknown attack 'deepfool'" in res.output


def test_stitch_writes_every_file(run, tmp_path):
    out = tmp_path / "st"
    res = run("stitch", "tiny10-s0", "tiny10-s1", "--out", str(out), "--epochs", "0",
              "--pairs", "features.1:features.1,features.6:features.6,features.1:features.6,features.6:features.1",
              "--index-samples", "100", "--html")
    for name in ["stitching.csv", "stitching_matrix.csv", "correlations.csv", "stitching.json", "figures.html"]:
        assert (out / name).is_file(), name
    page = (out / "figures.html").read_text()
    for title in ("stitching_linear_cka", "stitching_gbs_dense", "stitching_same_class_fraction_a"):
        assert f">{title}</a>" in page  # one page, an index entry per figure
    pairs = pd.read_csv(out / "stitching.csv")
    assert len(pairs) == 4 and pairs["stitched_accuracy"].between(0, 1).all()
    corr = pd.read_csv(out / "correlations.csv")
    assert set(corr["index"]) == {"same_class_fraction_a", "linear_cka", "gbs_dense"} and (corr["n"] == 4).all()
    assert "stitched accuracy over 4 pairs" in res.output


def test_stitch_rejects_a_malformed_pair(run, tmp_path):
    res = run("stitch", "tiny10-s0", "tiny10-s1", "--out", str(tmp_path / "x"), "--pairs", "features.1", ok=False)
    assert res.exit_code != 0 and "LAYER_A:LAYER_B" in res.output


def test_stitch_with_nothing_stitchable_is_a_clean_error(run, tmp_path):
    res = run("stitch", "mlp8", "tiny10-s0", "--out", str(tmp_path / "x"), "--epochs", "0", "--index-samples", "50",
              ok=False)
    assert res.exit_code == 1 and "no pair of layers could be stitched" in res.output
    assert "Traceback" not in res.output
