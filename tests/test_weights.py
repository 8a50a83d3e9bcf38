"""Weights laid out for one message's sparse features (nlu/weights.py): the same scores, no copy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from nlu import danger
from nlu.weights import for_sparse_rows, lay_out

TEXTS = ["boss not pay salary", "agent took my passport", "i want to go home", "fire in hostel"]
LABELS = ["wages", "documents", "homesick", "fire"]


def test_a_laid_out_estimator_scores_exactly_as_before():
    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)), LogisticRegression()
    )
    pipe.fit(TEXTS * 3, LABELS * 3)
    probe = ["salary not paid 3 month", "passport", "hostel fire", ""]
    before = pipe.predict_proba(probe)
    coef = pipe[-1].coef_.copy()
    assert lay_out(pipe) is pipe
    assert pipe[-1].coef_.T.flags["C_CONTIGUOUS"] and not coef.T.flags["C_CONTIGUOUS"]
    assert np.array_equal(pipe[-1].coef_, coef)
    assert np.array_equal(pipe.predict_proba(probe), before)


def test_anything_without_linear_weights_is_left_alone():
    assert lay_out(None) is None
    assert lay_out("not a model") == "not a model"


def test_the_danger_kinds_weights_survive_storage_laid_out(tmp_path):
    lex = danger.PackLexicon(
        "en",
        {k: [f"{k} phrase"] for k in danger.KINDS},
        [],
        [],
        [],
        {k: [f"a message about {k} now", f"help {k} here"] for k in danger.KINDS},
        ["i miss my mother", "this job is killing me"],
    )
    det = danger.DangerDetector.train([lex], [("hello", "greet")] * 3, embed=False)
    det.save(tmp_path / "danger.json")
    loaded = danger.DangerDetector.load(tmp_path / "danger.json")
    assert loaded.kind_coef.T.flags["C_CONTIGUOUS"]
    for text in ("help fire here", "a message about child now", "hello"):
        (p_loaded, kind_loaded), (p, kind) = loaded.probability(text), det.probability(text)
        assert kind_loaded == kind and p_loaded == pytest.approx(p, abs=1e-4)  # JSON: 5 digits


@pytest.mark.parametrize("shape", [(22, 1000), (1, 5)])
def test_the_sparse_product_is_unchanged(shape):
    rng = np.random.default_rng(0)
    coef = rng.normal(size=shape)
    x = sp.random(3, shape[1], density=0.05, format="csr", random_state=1)
    assert np.allclose(x @ for_sparse_rows(coef).T, x @ coef.T, rtol=0, atol=1e-12)
