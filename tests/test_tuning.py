"""The tuning stage on a real Ray runtime and MLflow store: search on a hold-out of train, record the
choice, run the seed stage with it, reuse it on rerun. The sweep pretrains too, with a first pretraining seed
that is not 0 (the tuning stage once hard-coded seed 0 beside the checkpoint key of the sweep's first seed)."""

import io

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.needs_data("glue/RTE", "corpus/wikitext-2")]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    import ray
    from ray import tune

    from seedlab.run.sweep import SweepSpec, run_sweep
    from seedlab.run.tuning import TuningSpec

    uri = f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"
    spec = SweepSpec(name="tuned", tasks=("rte",), models=("tiny",), pretrain_seeds=(3,), finetune_seeds=(0, 1),
                     hparams={"batch_size": 16, "epochs": 1, "max_seq_length": 32}, data={"max_train": 80, "max_eval": 40},
                     pretrained=True, pretrain={"tiny": {"max_steps": 2, "batch_size": 8, "max_seq_length": 32,
                                                         "max_train_lines": 200, "eval_blocks": 8}},
                     tuning=TuningSpec(search_space={"learning_rate": tune.choice([1e-4, 1e-3])}, algorithm="optuna",
                                       num_samples=3, seeds=(0, 1), asha=True))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        first_out, second_out = io.StringIO(), io.StringIO()
        first = run_sweep(spec, "tuned", uri, out=first_out)
        second = run_sweep(spec, "tuned", uri, out=second_out)
    finally:
        ray.shutdown()
    return uri, first, second, first_out.getvalue(), second_out.getvalue()


def test_tuning_records_trials_and_a_choice_on_the_holdout(tuned):
    from mlflow.tracking import MlflowClient

    uri, first, *_ = tuned
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tuned")
    tuning = client.search_runs([exp.experiment_id], "tags.`seedlab.kind` = 'tuning'")
    choice = client.search_runs([exp.experiment_id], "tags.`seedlab.kind` = 'tuning_choice'")
    assert 1 <= len(tuning) <= 3 and len(choice) == 1
    for run in tuning:  # evaluated on the hold-out of train: 20% of the 80 training examples, never the eval split
        assert run.data.params["holdout"] == "0.2" and int(run.data.params["num_eval"]) < 40
        # fine-tuned from the sweep's own pretrained family (seed 3), not a seed-0 one
        assert run.data.params["pretrain_seed"] == "3" and run.data.params["init_source"].startswith("checkpoint:")
        assert run.data.params["learning_rate"] in ("0.0001", "0.001")
    chosen = choice[0].data.params["learning_rate"]
    best = max(tuning, key=lambda r: r.data.metrics["criterion"])
    assert chosen == best.data.params["learning_rate"]
    trials = client.search_runs([exp.experiment_id], "tags.`seedlab.kind` = 'trial'")
    assert len(trials) == 2 and first.finished == 2
    for run in trials:
        assert run.data.params["learning_rate"] == chosen
        assert run.data.tags["seedlab.tuning_choice"] == choice[0].info.run_id
        assert run.data.params["holdout"] == "None" and run.data.params["num_eval"] == "40"


def test_rerun_reuses_the_tuning_stage_and_the_trials(tuned):
    _, _, second, _, second_out = tuned
    assert "reusing the finished choice" in second_out
    assert second.skipped == 2 and second.finished == 0
