"""Bad input through the pages (AppTest): out-of-range URL values are dropped with a notice and the URL rewritten,
one-class data is warned about, an unusable cache folder is said once per page and the app runs uncached, a path
outside GBS_DATA_ROOT is refused without a listing, and minibatch CKA states its batches."""

from __future__ import annotations

import numpy as np
import pytest
from apptest_helpers import assert_clean, open_page

from gbs_core.activations import save_activations

pytestmark = pytest.mark.usefixtures("module_disk_cache")


def warnings_of(at) -> list[str]:
    return [w.value for w in at.warning]


@pytest.mark.parametrize(("query", "key", "default"), [({"n": "99999999"}, "n", 500), ({"k": "100000"}, "k", 3),
                                                      ({"seed": "-3"}, "seed", 0), ({"km": "lots"}, "km", 5)])
def test_out_of_range_url_values_are_dropped_with_a_notice(query, key, default):
    at = open_page(**query)
    assert not at.exception
    assert any(f"The link's {key}=" in w and f"using {default} instead" in w for w in warnings_of(at)), warnings_of(at)
    assert at.number_input(key=key).value == default
    assert key not in at.query_params  # rewritten: the default leaves the URL
    assert_clean(at)


def test_one_class_data_is_warned_about(tmp_path):
    rng = np.random.default_rng(0)
    path = save_activations(tmp_path / "one.npz", {"a": rng.normal(size=(20, 5)), "b": rng.normal(size=(20, 3))},
                            np.zeros(20, dtype=int), class_names=["only"])
    at = open_page("pages/2_Modularity.py", data="npz", path=str(path))
    assert not at.exception
    assert any("are of one class ('only')" in w and "every layer looks prunable" in w for w in warnings_of(at))


def test_an_unusable_cache_folder_is_said_and_the_page_still_works(tmp_path, monkeypatch):
    from dashboard import cached

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GBS_CACHE_DIR", str(blocker / "cache"))
    cached.disk_cache.clear()
    try:
        at = open_page("pages/4_Motifs.py", n="60")
        assert not at.exception and not at.error
        said = [w for w in warnings_of(at) if "GBS_CACHE_DIR" in w]
        assert len(said) == 1 and "cannot be used" in said[0]
    finally:
        cached.disk_cache.clear()


def test_a_path_outside_the_data_root_is_refused_without_a_listing(tmp_path, monkeypatch):
    monkeypatch.setenv("GBS_DATA_ROOT", str(tmp_path))
    at = open_page(data="cifar10", path="/etc")
    assert not at.exception
    text = " ".join(e.value for e in at.error)
    assert "outside the data folder this server offers" in text and "passwd" not in text


def test_minibatch_cka_states_equal_batches():
    at = open_page("pages/3_Similarity.py")
    at.selectbox(key="sim_cka").set_value("minibatch").run()
    assert_clean(at)
    assert any("4 equal batches of 125 samples" in c.value for c in at.caption)
