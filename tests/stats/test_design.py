"""RunTable / SeedGrid: validation, grids, ragged designs, design reports."""

import numpy as np
import pytest

from seedlab.stats.design import RunTable, design_report


def _table(cells, m=4, model="base", method=None, n_classes=2, probs=True, seed=0):
    """A table with one run per (pretrain, finetune) in ``cells``."""
    rng = np.random.default_rng(seed)
    n = len(cells)
    preds = rng.integers(0, n_classes, (n, m))
    pr = None
    if probs:
        pr = rng.dirichlet(np.ones(n_classes), size=(n, m)).astype(np.float32)
    return RunTable.from_arrays(
        task="rte",
        labels=rng.integers(0, n_classes, m),
        model=[model] * n if isinstance(model, str) else model,
        pretrain_seed=[c[0] for c in cells],
        finetune_seed=[c[1] for c in cells],
        predictions=preds,
        probs=pr,
        method=method,
    )


def test_grid_of_complete_design():
    cells = [(p, f) for p in (3, 1, 2) for f in (0, 1)]
    t = _table(cells)
    g = t.grid("base")
    assert g.pretrain_seeds.tolist() == [1, 2, 3]
    assert g.finetune_seeds.tolist() == [0, 1]
    assert g.is_complete() and g.missing_cells() == []
    assert g.predictions.shape == (3, 2, 4) and g.probs.shape == (3, 2, 4, 2)
    # cell (p=3, f=1) is run index 1 in `cells`
    i = cells.index((3, 1))
    assert np.array_equal(g.predictions[2, 1], t.predictions[i])
    assert np.array_equal(g.correct[2, 1], (t.predictions[i] == t.labels).astype(float))
    assert g.complete() is g


def test_ragged_grid_reports_and_completes_deterministically():
    # seed 0: f 0,1,2 ; seed 1: f 0,1 ; seed 2: f 0,1,2 ; seed 3: f 0
    cells = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0)]
    t = _table(cells)
    g = t.grid("base")
    assert not g.is_complete()
    assert g.missing_cells() == [(1, 2), (3, 1), (3, 2)]
    assert np.isnan(g.correct[1, 2]).all()  # a hole is NaN, not a made-up value
    assert (g.predictions[3, 1] == np.iinfo(g.predictions.dtype).min).all()
    c = g.complete()
    # candidates: 4x1=4, 3x2=6, 2x3=6 -> tie on 6 runs broken by more pretraining seeds: {0,1,2} x {0,1}
    assert c.is_complete()
    assert c.pretrain_seeds.tolist() == [0, 1, 2] and c.finetune_seeds.tolist() == [0, 1]
    assert set(c.dropped) == {(0, 2), (2, 2), (3, 0)}
    assert "dropped 3 run(s)" in c.note
    assert not np.isnan(c.correct).any()
    assert g.complete().pretrain_seeds.tolist() == c.pretrain_seeds.tolist()  # deterministic

    rep = design_report(t)["base"]
    assert rep["n_runs"] == 9 and rep["P"] == 4 and rep["F"] == 3 and rep["complete"] is False
    assert rep["missing_cells"] == [(1, 2), (3, 1), (3, 2)]
    assert rep["runs_per_pretrain_seed"] == {0: 3, 1: 2, 2: 3, 3: 1}


def test_methods_axis_subset_and_report():
    cells = [(0, 0), (0, 1), (1, 0), (1, 1)]
    t = _table(cells + cells, method=["standard"] * 4 + ["mixout"] * 4)
    assert t.methods() == ["mixout", "standard"]
    with pytest.raises(ValueError, match="several methods"):
        t.grid("base")
    assert t.grid("base", method="mixout").is_complete()
    assert t.subset(method="mixout").n_runs == 4
    rep = design_report(t)["base"]
    assert rep["methods"] == ["mixout", "standard"] and rep["by_method"]["mixout"]["P"] == 2
    with pytest.raises(ValueError, match="no runs"):
        t.subset(model="large")


def test_multiple_models():
    cells = [(0, 0), (1, 0)]
    t = _table(cells + cells, model=["mini"] * 2 + ["large"] * 2)
    assert t.models() == ["large", "mini"]
    assert t.subset(model="mini").n_runs == 2
    with pytest.raises(ValueError, match="unknown model"):
        t.grid("huge")


def test_validation_errors():
    ok = dict(
        task="t",
        instance_ids=["a", "b"],
        labels=[0, 1],
        run_ids=["r1", "r2"],
        model=["m", "m"],
        pretrain_seed=[0, 0],
        finetune_seed=[0, 1],
        predictions=[[0, 1], [1, 1]],
        probs=None,
    )
    RunTable(**ok)
    with pytest.raises(ValueError, match="duplicate run cell: model='m', method='standard', pretrain_seed=0, finetune_seed=0"):
        RunTable(**{**ok, "finetune_seed": [0, 0]})
    with pytest.raises(ValueError, match="instance_ids are not unique"):
        RunTable(**{**ok, "instance_ids": ["a", "a"]})
    with pytest.raises(ValueError, match="run_ids are not unique"):
        RunTable(**{**ok, "run_ids": ["r", "r"]})
    with pytest.raises(ValueError, match="predictions has 3 instances, expected 2"):
        RunTable(**{**ok, "predictions": [[0, 1, 1], [1, 1, 0]]})
    with pytest.raises(ValueError, match="labels has 3 entries"):
        RunTable(**{**ok, "labels": [0, 1, 1]})
    with pytest.raises(ValueError, match="model has 1 entries, expected 2"):
        RunTable(**{**ok, "model": ["m"]})
    with pytest.raises(ValueError, match="probs must have shape"):
        RunTable(**{**ok, "probs": np.full((2, 3, 2), 0.5)})
    with pytest.raises(ValueError, match="integer class labels"):
        RunTable(**{**ok, "predictions": [[0.5, 1], [1, 1]]})
    with pytest.raises(ValueError, match="regression"):
        RunTable(**{**ok, "is_regression": True}).correctness()
    with pytest.raises(ValueError, match="probs must be None for a regression"):
        RunTable(**{**ok, "is_regression": True, "probs": np.full((2, 2, 2), 0.5)})
    with pytest.raises(ValueError, match="integer seeds"):
        RunTable(**{**ok, "pretrain_seed": ["a", "b"]})
    with pytest.raises(ValueError, match="no runs"):
        RunTable(**{**ok, "predictions": np.zeros((0, 2), int), "run_ids": [], "model": [], "pretrain_seed": [], "finetune_seed": []})
    # a duplicate is fine when the methods differ
    RunTable(**{**ok, "finetune_seed": [0, 0], "method": ["standard", "mixout"]})
    # regression tables keep float predictions
    r = RunTable(**{**ok, "labels": [0.5, 2.0], "predictions": [[0.1, 1.9], [0.4, 2.2]], "is_regression": True})
    assert r.grid("m").correct is None and r.grid("m").predictions.dtype.kind == "f"
