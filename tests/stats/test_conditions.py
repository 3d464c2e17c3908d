"""How `seedlab analyze` splits runs into conditions: a per-size learning rate is not a second condition of a
model, two configs of one model are (and only then is variance attributed to the config)."""

from __future__ import annotations

import numpy as np

from seedlab.analysis.analyze import AnalysisOptions, condition_table, design_sections
from seedlab.stats.design import RunTable


def table(configs: list[str], models: list[str]) -> RunTable:
    rng = np.random.default_rng(0)
    n, m = len(models), 40
    seeds = {}
    pretrain, finetune = [], []
    for model, config in zip(models, configs):  # 2 pretraining x 2 fine-tuning seeds per (model, config)
        k = seeds.get((model, config), 0)
        seeds[(model, config)] = k + 1
        pretrain.append(k // 2)
        finetune.append(k % 2)
    return RunTable(task="t", instance_ids=[f"i{j}" for j in range(m)], labels=rng.integers(0, 2, m),
                    run_ids=[f"r{i}" for i in range(n)], model=models, pretrain_seed=pretrain, finetune_seed=finetune,
                    predictions=rng.integers(0, 2, (n, m)), probs=None, hp_config=configs)


def test_configs_that_differ_only_between_models_keep_the_model_names():
    t = table(["a"] * 4 + ["b"] * 4, ["tiny"] * 4 + ["mini"] * 4)
    assert condition_table(t) is t
    sections = design_sections(t, "accuracy", AnalysisOptions(n_bootstrap=50))
    assert "variance_attribution" not in sections
    assert set(sections["expected_max"]) == {"tiny", "mini"}


def test_two_configs_of_one_model_are_two_conditions_and_get_a_variance_attribution():
    t = table(["a"] * 4 + ["b"] * 4 + ["a"] * 4, ["tiny"] * 8 + ["mini"] * 4)
    labels = set(condition_table(t).model)
    assert labels == {"tiny/hp-a", "tiny/hp-b", "mini/hp-a"}
    sections = design_sections(t, "accuracy", AnalysisOptions(n_bootstrap=50))
    assert set(sections["variance_attribution"]) == {"tiny"}
    assert "unavailable" not in sections["variance_attribution"]["tiny"]
