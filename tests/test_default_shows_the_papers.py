"""The bundled default (the digits in noise and the zoo's ResNet-56) shows the modularity paper's phenomena, where the
plain digits could not: Q starts low, rises over depth, and the 0.03 rule separates layers instead of flagging all."""

import pytest

from gbs_core.analysis import feature_set, modularity_by_layer, modularity_table
from gbs_core.data import DEFAULT_SOURCE, load_bundled
from gbs_core.pipeline import ModelSpec, load_model


@pytest.fixture(scope="module")
def default_tables():
    data = load_bundled(DEFAULT_SOURCE, "test").subsample(500, seed=0)
    out = {}
    for name in ("resnet56", "resnet56-digits"):
        fs = feature_set(load_model(ModelSpec("zoo", name)), data)
        out[name] = modularity_table(modularity_by_layer(fs, k=3), threshold=0.03)
    return out


def test_resnet56_curve_starts_low_and_rises(default_tables):
    q = default_tables["resnet56"]["q"].to_numpy()
    assert len(q) == 28
    assert q[0] < 0.35
    assert q[-1] - q[0] >= 0.4
    assert q[-1] == pytest.approx(q.max(), abs=0.05)  # class clusters form by the last block


def test_the_paper_rule_flags_some_layers_but_not_all(default_tables):
    flagged = int(default_tables["resnet56"]["prunable"].sum())
    assert 0 < flagged < 27


def test_a_model_trained_on_plain_digits_does_not_separate_the_noisy_ones(default_tables):
    # the cross-data-set comparison the zoo's "-digits" models allow: trained without noise, the last block's graph on
    # noisy images is far less modular than that of the same architecture trained on them
    q_noise = default_tables["resnet56"]["q"].iloc[-1]
    q_plain = default_tables["resnet56-digits"]["q"].iloc[-1]
    assert q_plain < q_noise - 0.3
