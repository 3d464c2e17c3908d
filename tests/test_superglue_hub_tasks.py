"""SuperGLUE MultiRC, WiC, WSC and RTE through their hub name, read from a copy of the hub repository's layout that
the test writes (parquet files per config, the dataset card's `configs`), as `<data dir>/hub/aps/super_glue`."""

import numpy as np
import pytest

from seedlab.data.tasks import TASKS, instance_groups, load_task

CLASS = ["False", "True"]


def _rows(config: str, split: str, n: int) -> dict:
    """Rows in the hub's columns for `config`; labels alternate so both classes occur."""
    offset = 1000 if split == "validation" else 0
    if config == "multirc":  # 2 paragraphs x 2 questions x n/4 answer options, idx as the hub numbers them
        rows = {"paragraph": [], "question": [], "answer": [], "idx": [], "label": []}
        for a in range(n):
            p, q = a // (n // 2), a // (n // 4)
            rows["paragraph"].append(f"paragraph {p} of {split}: the cat sat on the mat.")
            rows["question"].append(f"question {q}: where did the cat sit?")
            rows["answer"].append(f"answer {a}")
            rows["idx"].append({"paragraph": offset + p, "question": offset + q, "answer": offset + a})
            rows["label"].append(a % 2)
        return rows
    if config == "wic":
        return {"word": ["bank"] * n, "sentence1": [f"the bank of the river {i}" for i in range(n)],
                "sentence2": [f"money in the bank {i}" for i in range(n)], "start1": [4] * n, "start2": [13] * n,
                "end1": [8] * n, "end2": [17] * n, "idx": list(range(offset, offset + n)), "label": [i % 2 for i in range(n)]}
    if config == "wsc.fixed":
        return {"text": [f"Mark told Pete many lies about himself {i}." for i in range(n)],
                "span1_index": [0] * n, "span2_index": [6] * n, "span1_text": ["Mark"] * n,
                "span2_text": ["himself"] * n, "idx": list(range(offset, offset + n)),
                "label": [i % 2 for i in range(n)]}
    return {"premise": [f"premise {i}" for i in range(n)], "hypothesis": [f"hypothesis {i}" for i in range(n)],
            "idx": list(range(offset, offset + n)), "label": [i % 2 for i in range(n)]}


def _features(config: str):
    import datasets

    v, label = datasets.Value, datasets.ClassLabel
    if config == "multirc":
        return datasets.Features(paragraph=v("string"), question=v("string"), answer=v("string"),
                                 idx={"paragraph": v("int32"), "question": v("int32"), "answer": v("int32")},
                                 label=label(names=CLASS))
    if config == "wic":
        return datasets.Features(word=v("string"), sentence1=v("string"), sentence2=v("string"), start1=v("int32"),
                                 start2=v("int32"), end1=v("int32"), end2=v("int32"), idx=v("int32"),
                                 label=label(names=CLASS))
    if config == "wsc.fixed":
        return datasets.Features(text=v("string"), span1_index=v("int32"), span2_index=v("int32"),
                                 span1_text=v("string"), span2_text=v("string"), idx=v("int32"),
                                 label=label(names=CLASS))
    return datasets.Features(premise=v("string"), hypothesis=v("string"), idx=v("int32"),
                             label=label(names=["entailment", "not_entailment"]))


@pytest.fixture
def hub_copy(tmp_path, monkeypatch):
    """tmp/hub/aps/super_glue in the hub repository's layout, and the data dir pointing at tmp."""
    import datasets

    repo = tmp_path / "hub" / "aps" / "super_glue"
    card = ["---", "configs:"]
    for config in ("multirc", "wic", "wsc.fixed", "rte"):
        card += [f"- config_name: {config}", "  data_files:"]
        for split, n in (("train", 16), ("validation", 8)):
            (repo / config).mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_dict(_rows(config, split, n), features=_features(config)).to_parquet(
                str(repo / config / f"{split}-00000-of-00001.parquet"))
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (repo / "README.md").write_text("\n".join(card + ["---", ""]))
    monkeypatch.setenv("SEEDLAB_DATA", str(tmp_path))
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)  # the hub copy is local; HF_HUB_OFFLINE stays set
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return repo


@pytest.mark.parametrize("task", ["multirc", "wic", "wsc", "rte_sg"])
def test_each_task_loads_from_the_hub_layout_with_the_common_schema(hub_copy, task):
    train, evaluation = load_task(task)
    assert (len(train), len(evaluation)) == (16, 8)
    for split in (train, evaluation):
        assert split.column_names == ["instance_id", "text_a", "text_b", "label"]
        assert len(set(split["instance_id"])) == len(split)
        assert all(a and b for a, b in zip(split["text_a"], split["text_b"]))
        assert sorted(set(split["label"])) == [0, 1]
    assert not set(train["instance_id"]) & set(evaluation["instance_id"])
    assert TASKS[task].hub_path == "aps/super_glue"


def test_texts_and_labels_follow_the_documented_formats(hub_copy):
    _, multirc = load_task("multirc")
    first = multirc[0]
    assert first["text_a"] == "paragraph 0 of validation: the cat sat on the mat."
    assert first["text_b"] == "question 0: where did the cat sit? answer 0" and first["label"] == 0
    _, wic = load_task("wic")
    assert wic[1]["text_a"] == "bank: the bank of the river 1" and wic[1]["label"] == 1
    _, wsc = load_task("wsc")
    assert wsc[0]["text_b"] == 'Does "himself" refer to "Mark"?'
    _, rte = load_task("rte_sg")
    assert (rte[0]["text_a"], rte[0]["text_b"], rte[0]["label"]) == ("premise 0", "hypothesis 0", 0)


def test_multirc_instance_ids_carry_the_question(hub_copy):
    train, evaluation = load_task("multirc")
    ids = list(evaluation["instance_id"])
    assert ids[0] == "dev-01000-01000-001000"
    groups = instance_groups("multirc", ids)
    assert len(set(groups)) == 4 and list(groups[:2]) == ["dev-01000-01000", "dev-01000-01000"]
    assert instance_groups("rte_sg", ids) is None  # not a grouped task
    assert TASKS["multirc"].metrics == ("f1", "exact_match")


def test_a_multirc_trial_scores_exact_match_over_questions(hub_copy):
    from seedlab.run.trial import execute_trial
    from seedlab.stats.metrics import exact_match, f1

    cell = {"task": "multirc", "model": "tiny", "pretrain_seed": 0, "finetune_seed": 0,
            "hparams": {"learning_rate": 1e-3, "batch_size": 8, "epochs": 1, "max_seq_length": 32}}
    outcome = execute_trial(cell, device="cpu")
    questions = np.array([i.rsplit("-", 1)[0] for i in outcome.instance_ids])
    assert outcome.metrics["eval_exact_match"] == exact_match(outcome.labels, outcome.predictions, questions)
    assert outcome.metrics["eval_f1"] == f1(outcome.labels, outcome.predictions)
