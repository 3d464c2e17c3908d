"""`seedlab import`: published per-seed predictions -> trial runs that `seedlab analyze` reads.

One SQLite store per module: the Zhou et al. 2020 folder goes into one experiment, generic folders into others.
"""

import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seedlab.analysis.loader import load_experiment
from seedlab.errors import SeedlabError
from seedlab.store.importer import (ZHOU_MODEL, detect_format, import_predictions, import_trial_key, read_folder,
                              read_zhou2020)
from seedlab.stats.metrics import accuracy
from seedlab.data.paths import local_data_dir
from seedlab.store.contract import TAG_KIND, TAG_SWEEP, TAG_TRIAL_KEY, client

DATA = local_data_dir()
ZHOU = DATA / "predictions" / "zhou2020_instability_bert_base_mnli" if DATA else None
MCCOY = DATA / "predictions" / "mccoy2020_berts_of_a_feather" if DATA else None
# the Zhou et al. folder, and the MNLI dev set whose gold labels the importer checks it against
needs_zhou = pytest.mark.needs_data("predictions/zhou2020_instability_bert_base_mnli", "glue/MNLI")


def reported(k: int) -> float:
    text = (ZHOU / f"seed_{k}" / "mnli" / "eval_results.txt").read_text()
    return float(re.fullmatch(r"acc_mnli = (\S+)\s*", text).group(1))


def all_runs(store):
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in store.search_experiments(view_type=ViewType.ALL)]
    return store.search_runs(ids, run_view_type=ViewType.ALL, max_results=50000)


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.fixture(scope="module")
def zhou(uri):  # used by needs_zhou tests only
    result = import_predictions(ZHOU, experiment="zhou", tracking_uri=uri)
    return result, load_experiment("zhou", uri)


# --------------------------------------------------------------------------------------------------
# Zhou et al. 2020
# --------------------------------------------------------------------------------------------------


@needs_zhou
@pytest.mark.parametrize("k", range(1, 11))
def test_each_zhou_seed_reproduces_its_reported_mnli_accuracy(zhou, k):
    table = zhou[1].tables["mnli"]
    (row,) = np.flatnonzero(table.finetune_seed == k)
    assert abs(accuracy(table.labels, table.predictions[row]) - reported(k)) < 1e-12


@needs_zhou
def test_zhou_runs_have_the_cell_tags_metric_and_a_parent(zhou, uri):
    result, loaded = zhou
    table = loaded.tables["mnli"]
    assert list(loaded.tables) == ["mnli"] and loaded.run_status == {"FINISHED": 10}
    assert sorted(table.finetune_seed.tolist()) == list(range(1, 11))
    assert set(table.model) == {ZHOU_MODEL} and set(table.pretrain_seed) == {0}
    assert len(result.imported) == 10 and not result.skipped and any("mnli-mm" in n for n in result.notes)
    store = client(uri)
    parent = store.get_run(result.parent_run_id)
    assert parent.data.tags[TAG_KIND] == "import" and parent.info.status == "FINISHED"
    for name, run_id in result.imported:
        run = store.get_run(run_id)
        tags, k = run.data.tags, int(run.data.params["finetune_seed"])
        assert run.info.status == "FINISHED" and tags["mlflow.parentRunId"] == result.parent_run_id
        assert tags[TAG_KIND] == "trial" and tags[TAG_SWEEP] == "import:zhou2020"
        assert tags["seedlab.source"] == str(ZHOU.resolve())
        assert tags[TAG_TRIAL_KEY] == import_trial_key(ZHOU.name, f"seed_{k}/mnli")
        assert abs(run.data.metrics["eval_accuracy"] - reported(k)) < 1e-12
        assert name == f"mnli/{ZHOU_MODEL}/p0/f{k}"


@needs_zhou
def test_zhou_labels_ids_and_probs_follow_seedlab_conventions(zhou):
    from seedlab.data.tasks import load_task

    table = zhou[1].tables["mnli"]
    assert table.instance_ids.tolist() == [f"dev-{i:06d}" for i in range(9815)]
    assert np.bincount(table.labels).tolist() == [3479, 3123, 3213]  # entailment, neutral, contradiction
    assert table.labels[:2].tolist() == [1, 2]  # row 0 is neutral, row 1 contradiction
    assert table.probs.dtype == np.float32 and table.probs.shape == (10, 9815, 3)
    np.testing.assert_array_equal(table.probs.argmax(axis=2), table.predictions)
    np.testing.assert_allclose(table.probs.sum(axis=2), 1.0, atol=1e-5)
    # seedlab's own MNLI rows use the same ids and labels (its eval split is a subset of the imported rows)
    _, own = load_task("mnli", source="local")
    position = {iid: i for i, iid in enumerate(table.instance_ids)}
    rows = [position[i] for i in own["instance_id"]]
    np.testing.assert_array_equal(table.labels[rows], np.asarray(own["label"]))


@needs_zhou
def test_rerunning_the_zhou_import_imports_nothing(zhou, uri):
    before = len(all_runs(client(uri)))
    again = import_predictions(ZHOU, experiment="zhou", tracking_uri=uri)
    assert again.imported == [] and len(again.skipped) == 10 and again.parent_run_id is None
    assert len(all_runs(client(uri))) == before


def _tiny_zhou(tmp_path, mm_gold=True):
    """Two seeds, five rows, in Zhou et al.'s label order (0 contradiction, 1 entailment, 2 neutral)."""
    data = tmp_path / "data" / "glue" / "MNLI"
    data.mkdir(parents=True)
    gold = ["neutral", "contradiction", "entailment", "entailment", "neutral"]
    for name in ("dev_matched.tsv",) + (("dev_mismatched.tsv",) if mm_gold else ()):
        rows = [f"{i}\tp{i}\th{i}\t{g}" for i, g in enumerate(gold)]
        (data / name).write_text("index\tsentence1\tsentence2\tgold_label\n" + "\n".join(rows) + "\n")
    theirs = {"contradiction": 0, "entailment": 1, "neutral": 2}
    for k, flip in ((1, 0), (2, 4)):
        preds = [theirs[g] for g in gold]
        preds[flip] = (preds[flip] + 1) % 3
        logits = [[5.0 if c == p else float(c) for c in range(3)] for p in preds]
        for s in ("mnli", "mnli-mm", "hans"):
            d = tmp_path / "zhou" / f"seed_{k}" / s
            d.mkdir(parents=True)
            (d / "pred_results.txt").write_text(json.dumps(preds))
            (d / "logits_results.txt").write_text(json.dumps(logits))
            (d / "eval_results.txt").write_text(f"acc_{s} = {4 / 5}")
    return tmp_path / "zhou", tmp_path / "data"


def test_zhou_layout_imports_mismatched_only_with_gold_labels_and_remaps(tmp_path):
    folder, data = _tiny_zhou(tmp_path)
    plan = read_zhou2020(folder, data)
    assert sorted({r.task for r in plan.runs}) == ["mnli", "mnli-mm"] and len(plan.runs) == 4
    mm = next(r for r in plan.runs if r.task == "mnli-mm" and r.finetune_seed == 1)
    assert mm.instance_ids[0] == "dev_mm-000000" and mm.labels.tolist() == [1, 2, 0, 0, 1]
    assert mm.predictions.tolist() == [2, 2, 0, 0, 1]  # row 0: their neutral+1 = contradiction -> ours 2
    np.testing.assert_array_equal(mm.probs.argmax(axis=1), mm.predictions)
    assert any("hans" in n for n in plan.notes)
    (data / "glue" / "MNLI" / "dev_mismatched.tsv").unlink()
    plan = read_zhou2020(folder, data)
    assert {r.task for r in plan.runs} == {"mnli"} and any("mnli-mm" in n and "skipped" in n for n in plan.notes)


def test_zhou_layout_refuses_an_accuracy_it_cannot_reproduce(tmp_path):
    folder, data = _tiny_zhou(tmp_path)
    (folder / "seed_2" / "mnli" / "eval_results.txt").write_text("acc_mnli = 0.6")
    with pytest.raises(SeedlabError, match=r"seed_2/mnli: accuracy .* is 0.8 but eval_results.txt reports 0.6"):
        read_zhou2020(folder, data)


# --------------------------------------------------------------------------------------------------
# generic layout
# --------------------------------------------------------------------------------------------------

IDS = [f"x{i}" for i in range(6)]
LABELS = np.array([0, 1, 2, 2, 1, 0])


def _probs(seed):
    p = np.random.default_rng(seed).dirichlet(np.ones(3), size=len(IDS)).astype(np.float32)
    return p / p.sum(axis=1, keepdims=True, dtype=np.float32)


def write_generic(folder):
    """Three runs of task toy3 in the three file formats; the CSV run lists its instances in reverse."""
    folder.mkdir(parents=True)
    (folder / "runs.csv").write_text("run,task,model,pretrain_seed,finetune_seed,method\n"
                                     "a,toy3,m,0,1,\nb,toy3,m,0,2,\nc,toy3,m,1,1,standard\n")
    runs = {}
    for seed, name in enumerate("abc"):
        probs = _probs(seed)
        runs[name] = (probs.argmax(axis=1), probs)
    preds, probs = runs["a"]
    pq.write_table(pa.table({"instance_id": IDS, "label": LABELS, "prediction": preds,
                             "probs": [list(map(float, p)) for p in probs]}), folder / "a.parquet")
    preds, probs = runs["b"]
    lines = ["instance_id,label,prediction,prob_0,prob_1,prob_2"] + [
        f"{IDS[i]},{LABELS[i]},{preds[i]}," + ",".join(repr(float(v)) for v in probs[i]) for i in reversed(range(6))]
    (folder / "b.csv").write_text("\n".join(lines) + "\n")
    preds, probs = runs["c"]
    (folder / "c.jsonl").write_text("".join(json.dumps({"instance_id": IDS[i], "label": int(LABELS[i]),
                                                        "prediction": int(preds[i]), "probs": probs[i].tolist()}) + "\n"
                                            for i in range(6)))
    return runs


def test_generic_folder_round_trips_through_the_store(tmp_path, uri):
    runs = write_generic(tmp_path / "study")
    assert detect_format(tmp_path / "study") == "generic"
    result = import_predictions(tmp_path / "study", experiment="generic", tracking_uri=uri)
    assert len(result.imported) == 3
    table = load_experiment("generic", uri).tables["toy3"]
    assert table.instance_ids.tolist() == IDS
    np.testing.assert_array_equal(table.labels, LABELS)
    cells = list(zip(table.pretrain_seed.tolist(), table.finetune_seed.tolist()))
    for name, cell in zip("abc", [(0, 1), (0, 2), (1, 1)]):
        row = cells.index(cell)
        np.testing.assert_array_equal(table.predictions[row], runs[name][0])
        np.testing.assert_array_equal(table.probs[row], runs[name][1])  # float32, bit for bit
    metric = client(uri).get_run(result.imported[0][1]).data.metrics["eval_accuracy"]
    assert metric == accuracy(LABELS, runs["a"][0])
    assert import_predictions(tmp_path / "study", experiment="generic", tracking_uri=uri).imported == []


def _set(path, text):
    path.write_text(text)


BAD = {
    "missing column": (lambda f: _set(f / "b.csv", "instance_id,label\nx0,0\n"),
                       r"^b\.csv: missing column\(s\) \['prediction'\] \(required: instance_id, label, prediction"),
    "unknown run": (lambda f: shutil.copy(f / "a.parquet", f / "d.parquet"),
                    r"^d\.parquet: unknown run 'd', not in runs\.csv \(runs: a, b, c\)"),
    "duplicate cell": (lambda f: _set(f / "runs.csv", "run,task,model,pretrain_seed,finetune_seed\n"
                                                      "a,toy3,m,0,1\nb,toy3,m,0,2\nc,toy3,m,0,1\n"),
                       r"^runs\.csv line 4: duplicate cell \(task=toy3, model=m, method=standard, pretrain_seed=0, "
                       r"finetune_seed=1\) already on line 2"),
    "mismatched ids": (lambda f: _set(f / "c.jsonl", (f / "c.jsonl").read_text().replace('"x5"', '"x9"')),
                       r"^runs of task 'toy3' do not share instance ids: c\.jsonl .* \(only in c\.jsonl: \['x9'\]"),
    "missing file": (lambda f: (f / "c.jsonl").unlink(), r"^runs\.csv line 4: no prediction file for run 'c'"),
    "two files": (lambda f: shutil.copy(f / "b.csv", f / "c.csv"), r"^run 'c' has several prediction files"),
    "bad seed": (lambda f: _set(f / "runs.csv", "run,task,model,pretrain_seed,finetune_seed\na,toy3,m,zero,1\n"),
                 r"^runs\.csv line 2: pretrain_seed 'zero' is not an integer"),
    "unknown runs column": (lambda f: _set(f / "runs.csv", "run,task,model,pretrain_seed,finetune_seed,lr\n"),
                            r"^runs\.csv: unknown or repeated column\(s\) \['lr'\]"),
    "logits": (lambda f: _set(f / "b.csv", (f / "b.csv").read_text().replace(",0.", ",3.")),
               r"^b\.csv line 2: probs sum to .*, not 1 .*not logits$"),
    "labels disagree": (lambda f: _set(f / "c.jsonl", (f / "c.jsonl").read_text().replace('"label": 0', '"label": 1')),
                        r"^runs of task 'toy3' disagree on labels: c\.jsonl and a\.parquet"),
    "label out of range": (lambda f: _set(f / "c.jsonl", (f / "c.jsonl").read_text().replace('"label": 0',
                                                                                               '"label": 7')),
                           r"^c\.jsonl line 1: label is 7 \(valid class ids for task 'toy3': 0\.\.2\)"),
    "empty id": (lambda f: _set(f / "b.csv", (f / "b.csv").read_text().replace("x3,", ",")),
                 r"^b\.csv line \d: instance_id '' is empty"),
    "no runs.csv": (lambda f: (f / "runs.csv").unlink(), r"unrecognised layout \(valid: a folder with runs\.csv"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_generic_input_is_one_line_and_writes_nothing(tmp_path, uri, case):
    mutate, message = BAD[case]
    write_generic(tmp_path / "bad")
    mutate(tmp_path / "bad")
    store = client(uri)
    before = (len(all_runs(store)), len(store.search_experiments()))
    fresh = tmp_path / "fresh"
    for target in (uri, f"sqlite:///{fresh}/mlflow.db"):
        with pytest.raises(SeedlabError, match=message) as caught:
            import_predictions(tmp_path / "bad", experiment=f"bad-{case}", tracking_uri=target)
        assert "\n" not in str(caught.value)
    assert (len(all_runs(store)), len(store.search_experiments())) == before
    assert not fresh.exists()  # validation fails before a store is even opened


def test_store_side_conflicts_are_refused_before_writing(tmp_path, uri):
    write_generic(tmp_path / "study")
    import_predictions(tmp_path / "study", experiment="conflicts", tracking_uri=uri)
    store = client(uri)
    before = len(all_runs(store))
    # same folder, changed content: never a silent skip, never a duplicate
    path = tmp_path / "study" / "c.jsonl"
    first, *rest = path.read_text().splitlines(keepends=True)
    record = json.loads(first)
    record["prediction"] = (record["prediction"] + 1) % 3
    path.write_text(json.dumps(record) + "\n" + "".join(rest))
    with pytest.raises(SeedlabError, match=r"^c\.jsonl: run 'c' was imported into experiment 'conflicts' before with "
                                           r"different content"):
        import_predictions(tmp_path / "study", experiment="conflicts", tracking_uri=uri)
    # another folder with the same cells
    write_generic(tmp_path / "copy")
    with pytest.raises(SeedlabError, match=r"already has a run of this cell"):
        import_predictions(tmp_path / "copy", experiment="conflicts", tracking_uri=uri)
    # another folder, new cells, other instances of the same task
    write_generic(tmp_path / "other")
    (tmp_path / "other" / "runs.csv").write_text("run,task,model,pretrain_seed,finetune_seed\n"
                                                 "a,toy3,m2,0,1\nb,toy3,m2,0,2\nc,toy3,m2,1,1\n")
    for name in ("a.parquet", "b.csv", "c.jsonl"):
        (tmp_path / "other" / name).unlink()
    pq.write_table(pa.table({"instance_id": ["y0"], "label": [0], "prediction": [0]}), tmp_path / "other" / "a.parquet")
    for name in ("b", "c"):
        shutil.copy(tmp_path / "other" / "a.parquet", tmp_path / "other" / f"{name}.parquet")
    with pytest.raises(SeedlabError, match=r"task 'toy3' in experiment 'conflicts' has runs on other instances"):
        import_predictions(tmp_path / "other", experiment="conflicts", tracking_uri=uri)
    assert len(all_runs(store)) == before


def test_regression_task_round_trips(tmp_path, uri):
    folder = tmp_path / "reg"
    folder.mkdir()
    (folder / "runs.csv").write_text("run,task,model,pretrain_seed,finetune_seed\nr1,toyreg,m,0,0\nr2,toyreg,m,0,1\n")
    for name, shift in (("r1", 0.25), ("r2", -0.5)):
        (folder / f"{name}.csv").write_text("instance_id,label,prediction\n" + "".join(
            f"i{i},{i * 0.5},{i * 0.5 + shift * (i % 2)}\n" for i in range(5)))
    import_predictions(folder, experiment="reg", tracking_uri=uri)
    table = load_experiment("reg", uri).tables["toyreg"]
    assert table.is_regression and table.probs is None
    np.testing.assert_array_equal(table.labels, np.arange(5) * 0.5)
    np.testing.assert_array_equal(table.predictions, [[0, 0.75, 1, 1.75, 2], [0, 0, 1, 1, 2]])


@pytest.mark.needs_data("predictions/mccoy2020_berts_of_a_feather")
def test_mccoy_counts_are_refused_with_the_reason():
    with pytest.raises(SeedlabError, match=r"not per-run predictions, so it cannot be imported as trial runs"):
        read_folder(MCCOY)


# --------------------------------------------------------------------------------------------------
# reading with pyarrow: what a file says is what is imported
# --------------------------------------------------------------------------------------------------


def one_run_folder(tmp_path, name, text):
    """A generic folder with one run of task toy3 whose predictions file is `name` holding `text`."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "runs.csv").write_text(f"run,task,model,pretrain_seed,finetune_seed\n{name.split('.')[0]},toy3,m,0,1\n")
    (folder / name).write_text(text)
    return folder


def test_csv_ids_stay_text_exactly_as_written(tmp_path):
    # pyarrow would type a column of "007", "1e3", "1.0" as numbers; ids are read as text, surrounding spaces
    # stripped as before
    ids = ["007", "1e3", "1.0", "-0", "x", "8"]
    text = "instance_id,label,prediction\n" + "".join(f"{i},{k % 3},{k % 3}\n" for k, i in enumerate(ids))
    (run,) = read_folder(one_run_folder(tmp_path, "r.csv", text.replace("x,", "  x ,"))).runs
    assert run.instance_ids.tolist() == ids
    assert run.labels.dtype == np.int64 and run.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_csv_quoted_fields_header_spaces_and_blank_lines_are_read_as_written(tmp_path):
    text = (' instance_id , label,prediction\n'
            '"a,b",0,0\n'
            '\n'
            '"say ""hi""", 1 , 1\n'
            '   \n'
            '"two\nlines",2,2\n'
            'plain,0,1\n')
    (run,) = read_folder(one_run_folder(tmp_path, "r.csv", text)).runs
    assert run.instance_ids.tolist() == ["a,b", 'say "hi"', "two\nlines", "plain"]
    assert run.labels.tolist() == [0, 1, 2, 0] and run.predictions.tolist() == [0, 1, 2, 1]


def test_csv_messages_name_the_line_across_blank_lines(tmp_path):
    text = "instance_id,label,prediction\nx0,0,0\n\n   \nx1,1,1\n\nx2,-1,1\n"
    with pytest.raises(SeedlabError, match=r"^r\.csv line 7: label is -1 \(valid class ids"):
        read_folder(one_run_folder(tmp_path, "r.csv", text))


def test_csv_messages_count_rows_when_a_record_spans_lines(tmp_path):
    # after a quoted line break, lines no longer name rows: the data row from 0 is named instead
    text = 'instance_id,label,prediction\n"x\n0",0,0\nx1,1,1\nx2,-1,1\n'
    with pytest.raises(SeedlabError, match=r"^r\.csv row 2: label is -1 \(valid class ids"):
        read_folder(one_run_folder(tmp_path, "r.csv", text))


@pytest.mark.parametrize("cell, message", [
    ("", r"line 3: label is empty$"),
    ('""', r"line 3: label is empty$"),
    ("NA", r"line 3: label is not a number \('NA'\)$"),  # pyarrow's default would read NA as missing
    ("null", r"line 3: label is not a number \('null'\)$"),
    ("true", r"line 3: label is not a number \('true'\)$"),  # pyarrow's default would read a boolean
    ("nan", r"line 3: label is nan \(must be finite\)$"),
    ("1,1", r"line 3: has 4 fields where the header has 3$"),
])
def test_csv_cells_that_are_no_class_id(tmp_path, cell, message):
    text = f"instance_id,label,prediction\nx0,0,0\nx1,{cell},1\n"
    with pytest.raises(SeedlabError, match="^r\\.csv " + message):
        read_folder(one_run_folder(tmp_path, "r.csv", text))


def test_jsonl_integer_ids_become_their_decimal_text(tmp_path):
    text = "".join(json.dumps({"instance_id": i, "label": i % 3, "prediction": 0}) + "\n\n" for i in (7, 10, 3))
    (run,) = read_folder(one_run_folder(tmp_path, "r.jsonl", text)).runs
    assert run.instance_ids.tolist() == ["7", "10", "3"]


@pytest.mark.parametrize("lines, message", [
    (['{"instance_id": 7, "label": 0, "prediction": 0}', '{"instance_id": "x", "label": 0, "prediction": 0}'],
     r"^r\.jsonl line 2: instance_id is a string where earlier lines have a number \(valid: one JSON object per "
     r"line, each key holding one type\)$"),
    (['{"instance_id": "a", "label": 0, "prediction": 0}', "", '{"instance_id": "b", "prediction": 0}'],
     r"^r\.jsonl line 3: label is missing or null$"),
    (['{"instance_id": "a", "label": 0, "prediction": 0}', '{"instance_id": "b", "label": 0, "prediction": 0'],
     r"^r\.jsonl line 2: not valid JSON \("),
    (['{"instance_id": "a", "label": 0, "prediction": 0}', "[1, 2]"],
     r"^r\.jsonl line 2: is an array where earlier lines have an object"),
    (['{"instance_id": "a", "label": true, "prediction": 0}'],
     r"^r\.jsonl: label has type bool \(valid: integer or floating point\)$"),
])
def test_bad_jsonl_is_one_line_naming_the_line(tmp_path, lines, message):
    with pytest.raises(SeedlabError, match=message) as caught:
        read_folder(one_run_folder(tmp_path, "r.jsonl", "\n".join(lines) + "\n"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_parquet_probs_must_be_finite(tmp_path, bad):
    # the old reader let NaN probs of a parquet file through: NaN fails no comparison, so the sum check passed
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "runs.csv").write_text("run,task,model,pretrain_seed,finetune_seed\nr,toy3,m,0,1\n")
    probs = [[0.2, 0.3, 0.5], [bad, 0.5, 0.5], [0.1, 0.1, 0.8]]
    pq.write_table(pa.table({"instance_id": ["a", "b", "c"], "label": [2, 1, 2], "prediction": [2, 1, 2],
                             "probs": probs}), folder / "r.parquet")
    with pytest.raises(SeedlabError, match=rf"^r\.parquet row 1: probs hold {bad} \(must be finite\)$"):
        read_folder(folder)


def test_store_checks_read_every_page(tmp_path, monkeypatch):
    """A store that answers in pages of two: the re-import must still see all three runs, and skip them."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    write_generic(tmp_path / "study")
    import_predictions(tmp_path / "study", experiment="paged", tracking_uri=uri)
    search = MlflowClient.search_runs

    def small_pages(self, *args, max_results=1000, **kwargs):
        return search(self, *args, max_results=min(max_results, 2), **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", small_pages)
    again = import_predictions(tmp_path / "study", experiment="paged", tracking_uri=uri)
    assert again.imported == [] and len(again.skipped) == 3
    monkeypatch.undo()
    assert len(all_runs(client(uri))) == 4  # the parent and its three runs, nothing twice
