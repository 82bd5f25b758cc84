"""The command line never prints a traceback for a bad option: every option of every command is given 0, -1, nan and
a non-number (and a few other bad values), and each run ends with a usage error, a clean message, or success.
The catalogue of bad inputs the tests try is in tests/BAD_INPUTS.md."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from gbs_core.cli import main

# base arguments that make each command stop early with a clean error once its options are accepted (a data folder
# or model that does not exist), so a valid value costs a second, not a run
BASE = {
    ("layers",): ["no-such-model", "--out", "o"],
    ("analyze",): ["no-such-model", "--out", "o", "--data", "folder:/no/such/gbs"],
    ("prune",): ["no-such-model", "--out", "o", "--data", "folder:/no/such/gbs"],
    ("sanity-check",): ["--out", "o", "--models", "no-such-a,no-such-b", "--data", "folder:/no/such/gbs"],
    ("dynamics",): ["no-such-model", "--out", "o", "--data", "folder:/no/such/gbs"],
    ("adversarial",): ["no-such-model", "--out", "o", "--data", "folder:/no/such/gbs"],
    ("stitch",): ["no-such-a", "no-such-b", "--out", "o", "--data", "folder:/no/such/gbs"],
    ("transfer",): ["--out", "o", "--data", "folder:/no/such/gbs"],
    ("report",): ["no-such-model", "--out", "o", "--data", "folder:/no/such/gbs"],
    ("zoo", "list"): ["--checkpoints", "no-such-model"],
    ("zoo", "train"): ["--arch", "no_such_arch"],
}
BAD_VALUES = ["0", "-1", "nan", "inf", "abc", "", "1e999"]


def _options():
    for path, base in BASE.items():
        cmd = main
        for name in path:
            cmd = cmd.commands[name]
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.is_flag and param.name != "help":
                yield path, base, param.opts[0]


CASES = [(path, base, opt, value) for path, base, opt in _options() for value in BAD_VALUES]


def test_every_command_is_covered():
    assert {p[0] for p in BASE} == set(main.commands)
    assert len({(p, o) for p, _, o, _ in CASES}) > 50


@pytest.mark.parametrize(("path", "base", "opt", "value"), CASES,
                         ids=[f"{' '.join(p)} {o}={v}" for p, _, o, v in CASES])
def test_no_traceback_for_a_bad_option(tmp_path, monkeypatch, path, base, opt, value):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--cache-dir", str(tmp_path / "cache"), *path, *base, opt, value])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2)


@pytest.mark.parametrize(("args", "says"), [
    (["analyze", "resnet20", "--out", "o", "--n-samples", "0"], "0 is not in the range x>=1"),
    (["analyze", "resnet20", "--out", "o", "--seed", "-1"], "-1 is not in the range"),
    (["prune", "resnet20", "--out", "o", "--batch-size", "0"], "0 is not in the range x>=1"),
    (["prune", "resnet20", "--out", "o", "--control-seeds", "a,b"], "'a' is not an integer"),
    (["prune", "resnet20", "--out", "o", "--epochs", "-1"], "-1 is not in the range"),
    (["prune", "resnet20", "--out", "o", "--lr", "nan"], "'nan' is not a finite number"),
    (["prune", "resnet20", "--out", "o", "--lr", "0"], "must be greater than 0"),
    (["prune", "resnet20", "--out", "o", "--threshold", "nan"], "not a finite number"),
    (["analyze", "resnet20", "--out", "o", "--threshold", "inf"], "not a finite number"),
    (["dynamics", "resnet20", "--out", "o", "--files", "a.pt,b.pt", "--epochs", "x,1"], "'x' is not an integer"),
])
def test_bad_options_say_what_is_wrong(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--cache-dir", str(tmp_path / "cache"), *args])
    assert result.exit_code == 2 and says in result.output, result.output


def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["analyze", "resnet20", "--out", str(blocker / "sub")])
    assert result.exit_code == 2 and "cannot write into" in result.output and "Traceback" not in result.output


def test_an_unusable_cache_folder_warns_once_and_runs_uncached(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["--cache-dir", str(blocker / "cache"), "analyze", "tiny10-s0", "--n-samples", "30",
                                       "--metrics", "linear_cka", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert result.output.count("GBS_CACHE_DIR") == 1 and "cannot be used" in result.output
    assert (tmp_path / "o" / "summary.json").is_file()


def test_a_manifest_entry_without_its_sha256_is_a_message(tmp_path, monkeypatch):
    import json
    import shutil

    from gbs_core.zoo.registry import zoo_dir

    folder = tmp_path / "zoo"
    shutil.copytree(zoo_dir(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["models"]["resnet20"]["sha256"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("GBS_ZOO_DIR", str(folder))
    for args in (["zoo", "list"], ["layers", "resnet20", "--out", str(tmp_path / "o")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "'resnet20' lacks sha256" in result.output
