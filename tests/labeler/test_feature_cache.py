"""The feature cache: rows found by text across slices; an optimisation, never an error."""

from __future__ import annotations

import numpy as np

from templates.labeler.pkg.feature_cache import FeatureCache

IDENTITY = {"voter": "a", "revision": "r1"}


def test_rows_stored_in_one_slice_are_found_by_text_in_another(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.put("probabilities", IDENTITY, ["x", "y"], np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert np.allclose(cache.get("probabilities", IDENTITY, ["x", "y"]), [[0.1, 0.9], [0.8, 0.2]])
    assert cache.get("probabilities", IDENTITY, ["y", "x"]) is None
    rows, found = cache.rows("probabilities", IDENTITY, ["y", "z", "x"])
    assert found.tolist() == [True, False, True]
    assert np.allclose(rows[[0, 2]], [[0.8, 0.2], [0.1, 0.9]])
    assert cache.get("probabilities", {**IDENTITY, "revision": "r2"}, ["x", "y"]) is None


def test_a_folder_that_cannot_be_written_is_read_and_said_once(tmp_path, capsys):
    folder = tmp_path / "cache"
    FeatureCache(folder).put("probabilities", IDENTITY, ["x"], np.array([[0.3, 0.7]]))
    FeatureCache(folder).save_note("identities", {"recipe": 1}, IDENTITY)
    # a file where the cache needs a folder: every write fails with an OSError, as on a
    # read-only mount (which root, running the tests, could write through a chmod)
    (folder / "embeddings").write_text("not a folder")
    blocked = FeatureCache(folder)
    blocked.put("embeddings", IDENTITY, ["x"], np.array([[1.0, 2.0]]))
    blocked.put("embeddings", IDENTITY, ["y"], np.array([[3.0, 4.0]]))
    blocked.save_note("identities", {"recipe": 2}, IDENTITY)
    assert not blocked.writable
    assert capsys.readouterr().err.count("cannot be written") == 1
    assert np.allclose(blocked.get("probabilities", IDENTITY, ["x"]), [[0.3, 0.7]])
    assert blocked.note("identities", {"recipe": 1}) == IDENTITY
    assert blocked.note("identities", {"recipe": 2}) is None
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
