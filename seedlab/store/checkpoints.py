"""Where pretrained seed families live: (size, pretraining seed) -> a local BERT checkpoint directory.

`find_checkpoint(size, pretrain_seed)` looks, in order, at

1. `checkpoint_dir(size, seed)`: `$SEEDLAB_CHECKPOINTS/bert-<size>/seed_<seed>` (default
   `<cache>/checkpoints/...`), where a checkpoint placed by hand or by `seedlab.train.pretrain.save_checkpoint`
   lives. A local checkpoint always wins;
2. the newest FINISHED pretraining run of the family in MLflow (`seedlab.kind = pretrain`, logged by
   `seedlab.run.pretrain_stage`): tracking URI from `$MLFLOW_TRACKING_URI` (else the default local store), experiment
   from `$SEEDLAB_PRETRAIN_EXPERIMENT` (else "seedlab-pretrain"); both can be passed explicitly. The run's
   `checkpoint/` artifact is downloaded once per node into `<checkpoints root>/runs/<run id>` under a file
   lock with an atomic rename (as `seedlab.data.tokenizer` does). Keyed by run id, a download is never stale:
   pretraining a family again gives a new run and a new directory.

With `key=` (a `PretrainConfig.key()`) only a checkpoint of exactly that pretraining configuration is taken, and
(unless `experiment=` is given) from any experiment of the store: the key names the computation, not a place.
Checkpoints are safetensors only: a directory holding only pickled weights (`*.bin`) is refused, never loaded.

A checkpoint is a `BertForMaskedLM` directory (config.json, model.safetensors, tokenizer files,
`seedlab-pretrain.json`) whose weights also hold the pooler (`bert.pooler.*`) so that
`AutoModelForSequenceClassification.from_pretrained(path)` finds every backbone weight it needs (the `bert.` prefix is stripped by
transformers; the MLM head `cls.*` is reported as unused) and draws nothing at random. MLM does not train the
pooler: it is the pooler drawn from the pretraining seed at initialisation, exactly the one a random backbone
of that seed has (`seedlab.train.models.resolve_model`).

Hub families (`hub_family_name`): "multiberts" -> `google/multiberts-seed_<p>` (25 seeds, 0-24, all BERT-base);
a size name -> Google's BERT miniature of that shape (Turc et al. 2019), which exists for one pretraining seed only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from seedlab.data.paths import cache_dir, default_tracking_uri
from seedlab.errors import SeedlabError
from seedlab.store.contract import CHECKPOINT_DIR as CHECKPOINT_ARTIFACT  # the artifact dir of a pretraining run

log = logging.getLogger(__name__)

DEFAULT_PRETRAIN_EXPERIMENT = "seedlab-pretrain"
RECORD_FILE = "seedlab-pretrain.json"  # config, key and metrics of the pretraining that made a checkpoint
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
MULTIBERTS_SEEDS = range(25)


def checkpoints_root() -> Path:
    return Path(os.environ.get("SEEDLAB_CHECKPOINTS", cache_dir() / "checkpoints")).expanduser()


def checkpoint_dir(size: str, pretrain_seed: int) -> Path:
    """Where a local checkpoint of (size, pretraining seed) is placed and looked for first."""
    return checkpoints_root() / f"bert-{size}" / f"seed_{pretrain_seed}"


def pretrain_experiment() -> str:
    return os.environ.get("SEEDLAB_PRETRAIN_EXPERIMENT") or DEFAULT_PRETRAIN_EXPERIMENT


def is_checkpoint(path: Path) -> bool:
    """A loadable checkpoint directory: config.json and safetensors weights. Pickled-only weights raise."""
    path = Path(path)
    if not (path / "config.json").exists():
        return False
    if any((path / name).exists() for name in WEIGHT_FILES):
        return True
    if any(path.glob("*.bin")) or any(path.glob("*.pt")):
        raise SeedlabError(f"checkpoint {path} has only pickled weights; seedlab loads safetensors only "
                           "(re-save it with save_pretrained)")
    return False


def checkpoint_record(path: Path) -> dict:
    """The pretraining record saved with a checkpoint ({} for a checkpoint placed by hand)."""
    record = Path(path) / RECORD_FILE
    return json.loads(record.read_text()) if record.exists() else {}


def find_checkpoint(size: str, pretrain_seed: int, *, key: str | None = None, tracking_uri: str | None = None,
                    experiment: str | None = None) -> Path | None:
    """A local directory holding the checkpoint of (size, pretraining seed), or None if there is none."""
    local = checkpoint_dir(size, pretrain_seed)
    if is_checkpoint(local) and (key is None or checkpoint_record(local).get("key") == key):
        return local
    run = find_pretrain_run(size, pretrain_seed, key=key, tracking_uri=tracking_uri, experiment=experiment)
    if run is None:
        return None
    return download_checkpoint(run.info.run_id, tracking_uri)


def require_checkpoint(size: str, pretrain_seed: int, **where) -> Path:
    """`find_checkpoint`, but a missing checkpoint is a one-line error instead of None."""
    found = find_checkpoint(size, pretrain_seed, **where)
    if found is None:
        experiment = where.get("experiment") or pretrain_experiment()
        raise SeedlabError(f"no pretrained checkpoint for bert-{size} seed {pretrain_seed} (looked in "
                           f"{checkpoint_dir(size, pretrain_seed)} and MLflow experiment {experiment!r}); "
                           "run `seedlab pretrain` first")
    return found


def _store(tracking_uri: str | None):
    """An MlflowClient, or None when the store is a SQLite file that does not exist (nothing pretrained)."""
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def find_pretrain_run(size: str, pretrain_seed: int, *, key: str | None = None, tracking_uri: str | None = None,
                      experiment: str | None = None):
    """The newest FINISHED pretraining run of the family (an mlflow Run), or None."""
    from seedlab.store.contract import KIND_PRETRAIN, TAG_PRETRAIN_KEY, retry, run_filter, search_all

    store = _store(tracking_uri)
    if store is None:
        return None
    query = (run_filter(KIND_PRETRAIN, tags={TAG_PRETRAIN_KEY: key} if key is not None else None)
             + f" and params.size = '{size}' and params.pretrain_seed = '{int(pretrain_seed)}'")
    if key is not None and experiment is None:  # a key names the computation: any experiment of the store will do
        experiment_ids = [e.experiment_id for e in retry(store.search_experiments)]
    else:
        found = retry(store.get_experiment_by_name, experiment or pretrain_experiment())
        if found is None:
            return None
        experiment_ids = [found.experiment_id]
    runs = search_all(store, experiment_ids, query, order_by=["attributes.end_time DESC"],
                      limit=10) if experiment_ids else []
    name = experiment or pretrain_experiment()
    if len({r.data.tags.get(TAG_PRETRAIN_KEY) for r in runs}) > 1:
        log.warning("experiment %r holds several pretraining configurations of bert-%s seed %s; taking the "
                    "newest run %s (pass key= to choose)", name, size, pretrain_seed, runs[0].info.run_id)
    return runs[0] if runs else None


def download_checkpoint(run_id: str, tracking_uri: str | None = None) -> Path:
    """The `checkpoint/` artifact of a run, downloaded once per node into `<root>/runs/<run id>`."""
    target = checkpoints_root() / "runs" / run_id
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not is_checkpoint(target):
            from mlflow.artifacts import download_artifacts

            staging = Path(tempfile.mkdtemp(prefix=f".{run_id}-", dir=target.parent))
            try:
                uri = tracking_uri or default_tracking_uri()
                fetched = Path(download_artifacts(run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT,
                                                  dst_path=str(staging), tracking_uri=uri))
                if not is_checkpoint(fetched):
                    raise SeedlabError(f"run {run_id} has no usable {CHECKPOINT_ARTIFACT}/ artifact")
                fetched.rename(target)  # atomic: a half-downloaded checkpoint is never visible
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def hub_family_name(model: str, pretrain_seed: int) -> str:
    """The hub checkpoint of a published seed family: "multiberts" or a BERT size name.

    "multiberts" -> google/multiberts-seed_<p> (Sellam et al. 2022: 25 BERT-base pretraining seeds, 0-24).
    A size name -> google/bert_uncased_L-<L>_H-<H>_A-<A> (Turc et al. 2019's miniatures; "large" ->
    google-bert/bert-large-uncased). These were pretrained once: only pretraining seed 0 exists, and any other
    seed is an error rather than a silent copy of seed 0 (which would fake zero pretraining variance).
    """
    from seedlab.data.catalog import BERT_SIZES

    if model == "multiberts":
        if pretrain_seed not in MULTIBERTS_SEEDS:
            raise SeedlabError(f"invalid MultiBERTs seed {pretrain_seed!r} (valid: 0-24)")
        return f"google/multiberts-seed_{pretrain_seed}"
    if model in BERT_SIZES:
        if pretrain_seed != 0:
            raise SeedlabError(f"Google's BERT miniatures have a single pretraining seed (valid: 0), not "
                               f"{pretrain_seed!r}; pretrain seed families with `seedlab pretrain` or use multiberts")
        layers, hidden = BERT_SIZES[model]
        if model == "large":
            return "google-bert/bert-large-uncased"
        return f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"
    raise SeedlabError(f"unknown seed family {model!r} (valid: multiberts, {', '.join(BERT_SIZES)})")
