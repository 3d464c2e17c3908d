"""A known generative model of seed experiments, for testing the statistics against exact truths.

Model (a probit threshold model, deterministic given the latent, so every truth is exact):

For model s (s = 0..S-1, ordered by size), pretraining seed p, fine-tuning seed f and instance k::

    mu[s, k]      = ability[s] - difficulty[k] + offset[s, k]
    latent        = mu[s, k] + u[s, p, k] + e[s, p, f, k]
    u[s, p, k]    ~ N(0, pretrain_sd[s]^2)      (pretraining-seed effect, per seed and instance)
    e[s, p, f, k] ~ N(0, finetune_sd[s]^2)      (fine-tuning effect, per run and instance)
    correct       = 1[latent > 0]

``offset`` plants a known set D of *decaying* instances (``decaying_fraction`` of m, chosen at random):
for k in D, ``offset[s, k] = -(ability[s] - ability[0]) - decay_margin * s``, so that on those instances
``mu`` falls with size by ``decay_margin`` per step; elsewhere ``offset = 0`` and, with abilities
increasing in size, larger models are better.

Optionally the pretraining effects of different models that share a pretraining seed id are correlated
(``pretrain_corr``; e.g. an intervention applied to the same pretrained checkpoint), and a share of each
effect's variance is common to all instances of a seed or run (``pretrain_shared``, ``finetune_shared``:
``u[s, p, k] = pretrain_sd (sqrt(1 - h) z[s, p, k] + sqrt(h) z[s, p])``), a seed "main effect" that moves
the whole accuracy. Per instance the effects stay N(0, sd^2), so the per-instance truths below do not
depend on these options.

Exact truths per model and instance (Phi = standard normal CDF, sd = sqrt(pretrain_sd^2 + finetune_sd^2),
a = mu / sd, rho = pretrain_sd^2 / sd^2; Owen's T function gives the bivariate normal orthant)::

    acc      = P(correct)            = Phi(a)
    E_p[g^2] = P(two runs of one seed both correct) = Phi2(a, a; rho) = Phi(a) - 2 T(a, sqrt((1-rho)/(1+rho)))
    PretVar  = Var_p[E_f c]          = Phi2(a, a; rho) - acc^2
    FineVar  = E_p[Var_f c]          = acc - Phi2(a, a; rho)
    Bias^2   = E[(1-c)^2] - PretVar - FineVar = (1 - acc)^2
    decay fraction (s1 -> s2)        = mean_k [acc[s2, k] < acc[s1, k]]

and, for the population of instances (difficulty ~ N(difficulty_mean, difficulty_sd^2), no offsets), the
population accuracy ``Phi(ability / sqrt(difficulty_sd^2 + pretrain_sd^2 + finetune_sd^2))`` (used by the
Multi-Bootstrap coverage tests; see ``population_accuracy``).

Predictions: label when correct, otherwise a uniformly chosen other class; probabilities put
``1/C + (1 - 1/C) tanh(|latent| + 0.1)`` on the predicted class and share the rest equally, so the argmax
is always the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, owens_t

from seedlab.stats.design import RunTable

__all__ = [
    "SimulationTruth",
    "make_truth",
    "sample_correctness",
    "simulate_experiment",
    "population_accuracy",
    "exact_components",
]


def exact_components(mu, pretrain_sd, finetune_sd) -> dict[str, np.ndarray]:
    """Exact accuracy, PretVar, FineVar and Bias^2 of ``c = 1[mu + u + e > 0]`` (u, e independent normals).

    Parameters
    ----------
    mu : array-like
        Latent means.
    pretrain_sd, finetune_sd : array-like
        SDs of the pretraining effect u and the fine-tuning effect e; not both 0. All three broadcast.

    Returns
    -------
    dict of ndarray
        ``acc``, ``pretrain_var``, ``finetune_var``, ``bias2``, ``loss``.

    Notes
    -----
    With ``sd = sqrt(pretrain_sd^2 + finetune_sd^2)``, ``a = mu / sd``, ``rho = pretrain_sd^2 / sd^2``::

        acc      = Phi(a)
        E_p[g^2] = Phi2(a, a; rho) = Phi(a) - 2 T(a, sqrt((1 - rho) / (1 + rho)))
        PretVar  = E_p[g^2] - acc^2,   FineVar = acc - E_p[g^2],   Bias^2 = (1 - acc)^2

    (T: Owen's T function, ``scipy.special.owens_t``), the truths of Zhong et al.'s Theorem 2 for this model.

    References
    ----------
    The model mimics the seed tree of Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language
    Models Uniformly Better?", Findings of ACL 2021 (arXiv 2105.06020); Owen, "Tables for computing bivariate
    normal probabilities", Annals of Mathematical Statistics 27(4), 1956 (Owen's T).
    """
    mu = np.asarray(mu, dtype=np.float64)
    sp = np.asarray(pretrain_sd, dtype=np.float64)
    sf = np.asarray(finetune_sd, dtype=np.float64)
    var = sp**2 + sf**2
    if np.any(var <= 0):
        raise ValueError("pretrain_sd and finetune_sd cannot both be 0 (the model would be deterministic)")
    sd = np.sqrt(var)
    a = mu / sd
    rho = sp**2 / var
    acc = ndtr(a)
    e_g2 = acc - 2.0 * owens_t(a, np.sqrt((1.0 - rho) / (1.0 + rho)))
    e_g2 = np.clip(e_g2, acc**2, acc)  # guard rounding: acc^2 <= E[g^2] <= acc
    pret = e_g2 - acc**2
    fine = acc - e_g2
    bias2 = (1.0 - acc) ** 2
    return {"acc": acc, "pretrain_var": pret, "finetune_var": fine, "bias2": bias2, "loss": 1.0 - acc}


def population_accuracy(ability, *, difficulty_mean: float, difficulty_sd: float, pretrain_sd,
                        finetune_sd) -> np.ndarray:
    """Accuracy over the whole population of instances (no planted offsets).

    Parameters
    ----------
    ability : array-like
        Ability of each model.
    difficulty_mean, difficulty_sd : float
        The normal distribution of instance difficulties.
    pretrain_sd, finetune_sd : array-like
        Noise SDs (broadcast with ``ability``).

    Returns
    -------
    ndarray
        ``Phi((ability - difficulty_mean) / sqrt(difficulty_sd^2 + pretrain_sd^2 + finetune_sd^2))``: the
        population truth the Multi-Bootstrap's intervals must cover.

    References
    ----------
    The model mimics the seed tree of Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language
    Models Uniformly Better?", Findings of ACL 2021 (arXiv 2105.06020); Owen, "Tables for computing bivariate
    normal probabilities", Annals of Mathematical Statistics 27(4), 1956 (Owen's T).
    """
    ability = np.asarray(ability, dtype=np.float64)
    tot = difficulty_sd**2 + np.asarray(pretrain_sd, dtype=np.float64) ** 2 + np.asarray(finetune_sd, dtype=np.float64) ** 2
    return ndtr((ability - difficulty_mean) / np.sqrt(tot))


@dataclass(frozen=True)
class SimulationTruth:
    """The exact truths of a simulated experiment (models indexed in size order).

    Attributes:
        model_names: names, smallest model first.
        ability: (S,), difficulty: (m,), offset: (S, m), mu: (S, m) latent means.
        pretrain_sd, finetune_sd: (S,).
        pretrain_corr: correlation of pretraining effects across models sharing a seed id.
        pretrain_shared, finetune_shared: share of each effect's variance common to all instances of a
            seed / run (a seed or run "main effect"); per-instance truths do not depend on them.
        decaying: (m,) bool, the planted set D.
        acc, pretrain_var, finetune_var, bias2: (S, m) exact per-instance truths.
        accuracy: (S,) mean over these instances of acc.
        decay_fraction: {(name_small, name_large): fraction of instances with acc_large < acc_small}.
        accuracy_difference: {(name_a, name_b): accuracy[b] - accuracy[a]} for a before b.
    """

    model_names: tuple
    ability: np.ndarray
    difficulty: np.ndarray
    offset: np.ndarray
    mu: np.ndarray
    pretrain_sd: np.ndarray
    finetune_sd: np.ndarray
    pretrain_corr: float
    pretrain_shared: float
    finetune_shared: float
    decaying: np.ndarray
    acc: np.ndarray
    pretrain_var: np.ndarray
    finetune_var: np.ndarray
    bias2: np.ndarray
    accuracy: np.ndarray
    decay_fraction: dict
    accuracy_difference: dict

    def index(self, name: str) -> int:
        return self.model_names.index(name)


def _per_model(name: str, value, S: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (S,)).copy()
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def make_truth(
    model_names,
    difficulty,
    *,
    ability=None,
    pretrain_sd=0.5,
    finetune_sd=0.5,
    decaying=None,
    decay_margin: float = 1.0,
    pretrain_corr: float = 0.0,
    pretrain_shared: float = 0.0,
    finetune_shared: float = 0.0,
) -> SimulationTruth:
    """Exact truths of the simulator's model for given instance difficulties and a planted decaying set.

    Parameters
    ----------
    model_names : sequence of str
        Unique names, smallest model first.
    difficulty : array-like of shape (m,)
        Instance difficulties.
    ability : array-like of shape (S,), optional
        Ability per model (default ``linspace(0, 1, S)``).
    pretrain_sd, finetune_sd : float or array-like of shape (S,), default=0.5
        Noise SDs.
    decaying : array-like of bool, shape (m,), optional
        The planted set D of decaying instances (default: none).
    decay_margin : float, default=1.0
        How much ``mu`` falls per size step on D.
    pretrain_corr, pretrain_shared, finetune_shared : float in [0, 1], default=0.0
        Correlation of pretraining effects across models sharing a seed id; share of each effect's variance
        common to all instances of a seed / run (module docstring).

    Returns
    -------
    SimulationTruth
        Latent means and the exact per-instance and per-model truths.

    Notes
    -----
    ``mu[s, k] = ability[s] - difficulty[k] + offset[s, k]``, ``offset[s, k] = -(ability[s] - ability[0]) -
    decay_margin s`` on D and 0 elsewhere; per-instance truths from ``exact_components``.

    References
    ----------
    The model mimics the seed tree of Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language
    Models Uniformly Better?", Findings of ACL 2021 (arXiv 2105.06020); Owen, "Tables for computing bivariate
    normal probabilities", Annals of Mathematical Statistics 27(4), 1956 (Owen's T).
    """
    names = tuple(str(x) for x in model_names)
    S = len(names)
    if S < 1 or len(set(names)) != S:
        raise ValueError(f"model_names must be non-empty and unique, got {list(model_names)}")
    diff = np.asarray(difficulty, dtype=np.float64)
    if diff.ndim != 1 or diff.shape[0] < 1:
        raise ValueError("difficulty must be a non-empty 1-D array")
    m = diff.shape[0]
    ab = np.linspace(0.0, 1.0, S) if ability is None else np.asarray(ability, dtype=np.float64)
    if ab.shape != (S,):
        raise ValueError(f"ability must have one value per model ({S}), got shape {ab.shape}")
    sp = _per_model("pretrain_sd", pretrain_sd, S)
    sf = _per_model("finetune_sd", finetune_sd, S)
    for name, v in (("pretrain_corr", pretrain_corr), ("pretrain_shared", pretrain_shared),
                    ("finetune_shared", finetune_shared)):
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"{name} must lie in [0, 1], got {v}")
    dec = np.zeros(m, dtype=bool) if decaying is None else np.asarray(decaying, dtype=bool)
    if dec.shape != (m,):
        raise ValueError(f"decaying must be a bool array of shape ({m},)")
    offset = np.zeros((S, m))
    steps = np.arange(S, dtype=np.float64)
    offset[:, dec] = (-(ab - ab[0]) - decay_margin * steps)[:, None]
    mu = ab[:, None] - diff[None, :] + offset
    comp = exact_components(mu, sp[:, None], sf[:, None])
    acc = comp["acc"]
    accuracy = acc.mean(axis=1)
    decay_fraction = {}
    accuracy_difference = {}
    for i in range(S):
        for j in range(i + 1, S):
            decay_fraction[(names[i], names[j])] = float(np.mean(acc[j] < acc[i]))
            accuracy_difference[(names[i], names[j])] = float(accuracy[j] - accuracy[i])
    return SimulationTruth(
        model_names=names,
        ability=ab,
        difficulty=diff,
        offset=offset,
        mu=mu,
        pretrain_sd=sp,
        finetune_sd=sf,
        pretrain_corr=float(pretrain_corr),
        pretrain_shared=float(pretrain_shared),
        finetune_shared=float(finetune_shared),
        decaying=dec,
        acc=acc,
        pretrain_var=comp["pretrain_var"],
        finetune_var=comp["finetune_var"],
        bias2=comp["bias2"],
        accuracy=accuracy,
        decay_fraction=decay_fraction,
        accuracy_difference=accuracy_difference,
    )


def _shared(gen: np.random.Generator, shape: tuple, shared: float) -> np.ndarray:
    """Standard normals of ``shape`` (..., m) whose variance is ``shared`` common to the last axis."""
    z = gen.standard_normal(shape)
    if shared > 0:
        z = np.sqrt(1.0 - shared) * z + np.sqrt(shared) * gen.standard_normal(shape[:-1] + (1,))
    return z


def _latents(truth: SimulationTruth, P: int, F: int, gen: np.random.Generator, lead: tuple) -> np.ndarray:
    S, m = truth.mu.shape
    z = _shared(gen, lead + (S, P, 1, m), truth.pretrain_shared)
    if truth.pretrain_corr > 0:
        r = truth.pretrain_corr
        z = np.sqrt(r) * _shared(gen, lead + (1, P, 1, m), truth.pretrain_shared) + np.sqrt(1.0 - r) * z
    u = truth.pretrain_sd[:, None, None, None] * z
    e = truth.finetune_sd[:, None, None, None] * _shared(gen, lead + (S, P, F, m), truth.finetune_shared)
    return truth.mu[:, None, None, :] + u + e


def sample_correctness(truth: SimulationTruth, *, P: int, F: int, rng=None,
                       n_experiments: int | None = None) -> np.ndarray:
    """Correctness draws of the seed tree, instances (and so the truths) held fixed, seeds redrawn.

    Parameters
    ----------
    truth : SimulationTruth
        The model (``make_truth``).
    P, F : int
        Pretraining seeds and fine-tuning seeds per pretraining seed.
    rng : int, numpy.random.Generator or None, default=None
        Seed of ``np.random.default_rng``, or a Generator.
    n_experiments : int, optional
        Draw this many independent experiments at once.

    Returns
    -------
    ndarray of bool
        (S, P, F, m), or (n_experiments, S, P, F, m).

    Notes
    -----
    ``correct = 1[mu[s, k] + u[s, p, k] + e[s, p, f, k] > 0]`` with ``u ~ N(0, pretrain_sd^2)`` and
    ``e ~ N(0, finetune_sd^2)`` (module docstring for the shared and correlated parts). Vectorised.

    References
    ----------
    The model mimics the seed tree of Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language
    Models Uniformly Better?", Findings of ACL 2021 (arXiv 2105.06020); Owen, "Tables for computing bivariate
    normal probabilities", Annals of Mathematical Statistics 27(4), 1956 (Owen's T).
    """
    if P < 1 or F < 1:
        raise ValueError(f"P and F must be >= 1, got P={P}, F={F}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    lead = () if n_experiments is None else (int(n_experiments),)
    return _latents(truth, P, F, gen, lead) > 0


def simulate_experiment(
    *,
    n_models: int = 2,
    model_names=None,
    P: int = 4,
    F: int = 3,
    m: int = 200,
    n_classes: int = 2,
    difficulty=(0.0, 1.0),
    ability=None,
    pretrain_sd=0.5,
    finetune_sd=0.5,
    decaying_fraction: float = 0.05,
    decay_margin: float = 1.0,
    pretrain_corr: float = 0.0,
    pretrain_shared: float = 0.0,
    finetune_shared: float = 0.0,
    task: str = "simulated",
    rng=None,
) -> tuple[RunTable, SimulationTruth]:
    """Simulate one seed experiment and return ``(RunTable, SimulationTruth)``.

    Parameters
    ----------
    n_models : int, default=2
        Number of models.
    model_names : sequence of str, optional
        Their names, smallest first (default "s0", "s1", ...).
    P, F : int, default=4 and 3
        Pretraining seeds (0..P-1) and fine-tuning seeds (0..F-1) per model; every cell is run.
    m : int, default=200
        Instances.
    n_classes : int, default=2
        Classes (labels uniform on 0..C-1).
    difficulty : (float, float) or array-like of shape (m,), default=(0.0, 1.0)
        ``(mean, sd)`` of normal instance difficulties, or the difficulties.
    ability : array-like of shape (n_models,), optional
        Ability per model (default ``linspace(0, 1, n_models)``).
    pretrain_sd, finetune_sd : float or array-like, default=0.5
        Noise SDs, scalar or one per model.
    decaying_fraction : float, default=0.05
        Share of instances (``round(fraction m)``, chosen at random) planted as decaying.
    decay_margin : float, default=1.0
        How much ``mu`` falls per size step on them.
    pretrain_corr : float, default=0.0
        Correlation of pretraining effects across models sharing a seed id.
    pretrain_shared, finetune_shared : float, default=0.0
        Share of the pretraining / fine-tuning effect's variance that is common to all instances of a seed
        / run (a seed "main effect" that moves the whole accuracy).
    task : str, default="simulated"
        Task name of the table.
    rng : int, numpy.random.Generator or None, default=None
        Seed of ``np.random.default_rng``, or a Generator.

    Returns
    -------
    table : RunTable
        The runs (predictions, and probabilities whose argmax is the prediction).
    truth : SimulationTruth
        The exact truths.

    Notes
    -----
    Draw order from the generator: difficulties (if drawn), the decaying set, labels, latents
    (pretraining effects, [common effects], fine-tuning effects), wrong-class choices, nothing else.
    The model is in the module docstring.

    References
    ----------
    The model mimics the seed tree of Zhong, Ghosh, Klein & Steinhardt, "Are Larger Pretrained Language
    Models Uniformly Better?", Findings of ACL 2021 (arXiv 2105.06020); Owen, "Tables for computing bivariate
    normal probabilities", Annals of Mathematical Statistics 27(4), 1956 (Owen's T).
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if model_names is None:
        model_names = [f"s{i}" for i in range(n_models)]
    names = [str(x) for x in model_names]
    if len(names) != n_models:
        raise ValueError(f"model_names has {len(names)} names, expected n_models={n_models}")
    if m < 1 or n_classes < 2:
        raise ValueError(f"need m >= 1 and n_classes >= 2, got m={m}, n_classes={n_classes}")
    if not (0.0 <= decaying_fraction <= 1.0):
        raise ValueError(f"decaying_fraction must lie in [0, 1], got {decaying_fraction}")
    if isinstance(difficulty, tuple) and len(difficulty) == 2:
        diff = gen.normal(difficulty[0], difficulty[1], size=m)
    else:
        diff = np.asarray(difficulty, dtype=np.float64)
        if diff.shape != (m,):
            raise ValueError(f"difficulty must be (mean, sd) or an array of shape ({m},), got shape {diff.shape}")
    n_dec = int(round(decaying_fraction * m))
    dec = np.zeros(m, dtype=bool)
    dec[gen.choice(m, size=n_dec, replace=False)] = True
    truth = make_truth(names, diff, ability=ability, pretrain_sd=pretrain_sd, finetune_sd=finetune_sd,
                       decaying=dec, decay_margin=decay_margin, pretrain_corr=pretrain_corr,
                       pretrain_shared=pretrain_shared, finetune_shared=finetune_shared)

    labels = gen.integers(0, n_classes, size=m)
    latent = _latents(truth, P, F, gen, ())  # (S, P, F, m)
    correct = latent > 0
    S = n_models
    wrong_shift = gen.integers(1, n_classes, size=correct.shape)
    preds = np.where(correct, labels, (labels + wrong_shift) % n_classes)
    conf = 1.0 / n_classes + (1.0 - 1.0 / n_classes) * np.tanh(np.abs(latent) + 0.1)
    other = (1.0 - conf) / (n_classes - 1)
    probs = np.broadcast_to(other[..., None], correct.shape + (n_classes,)).copy()
    np.put_along_axis(probs, preds[..., None], conf[..., None], axis=-1)

    ss, pp, ff = np.meshgrid(np.arange(S), np.arange(P), np.arange(F), indexing="ij")
    n = S * P * F
    table = RunTable.from_arrays(
        task=task,
        labels=labels,
        model=np.array(names)[ss.ravel()],
        pretrain_seed=pp.ravel(),
        finetune_seed=ff.ravel(),
        predictions=preds.reshape(n, m),
        probs=probs.reshape(n, m, n_classes).astype(np.float32),
        instance_ids=np.array([f"i{k:05d}" for k in range(m)]),
    )
    return table, truth
