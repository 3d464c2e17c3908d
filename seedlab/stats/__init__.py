"""Statistics of seed experiments: pure numpy/scipy functions over arrays (no training, no tracking).

Modules:
    metrics            task metrics (accuracy, F1, MCC, Pearson, Spearman), scalar and batched
    design             RunTable / SeedGrid data model and design reports
    agreement          prediction-level instability (SD, PD, JSD, Fleiss' kappa, consistency) and validity checks
    representations    SVCCA, orthogonal Procrustes and linear-CKA distances between hidden states
    zhong              instance-level comparison of sizes (Zhong et al. 2021)
    multibootstrap     the MultiBERTs Multi-Bootstrap (Sellam et al. 2022)
    method_comparison  instability of mitigation methods compared on equal seed counts (Du & Nguyen 2023)
    variance           variance attributed to hyperparameter config and seeds (ANOVA components)
    expected_max       expected best score of n trials (Dodge et al. 2019)
    aso                Almost Stochastic Order between models' score distributions (del Barrio et al.; Dror et al.)
    seed_budget        how many pretraining / fine-tuning seeds a claim needs, from a pilot's variance components
    multiplicity       predictive multiplicity over seeds (Marx et al. 2020), flip rates, churn
    ensembles          accuracy and instability of ensembles of k seeds
    simulate           a known generative model with exact truths, for tests

API conventions (every public function): data first, options keyword-only; ``n_bootstrap`` is the number
of bootstrap resamples and ``rng`` an int seed or a ``numpy.random.Generator`` (``np.random.default_rng``);
two-arm comparisons are unpaired unless ``paired=True`` (see ``multibootstrap``).
"""

from seedlab.stats.agreement import (
    agreement_pairwise,
    consistency_all,
    fleiss_kappa,
    instability_measures,
    label_counts,
    mean_pairwise_jsd,
    measure_agreement,
    pairwise_disagreement,
    ranking_agreement,
    subsample_insensitivity,
    summarize_metric,
)
from seedlab.stats.design import STANDARD_METHOD, RunTable, SeedGrid, design_report
# the function `multibootstrap` is deliberately not re-exported here: it would shadow its module
# (`seedlab.stats.multibootstrap`); import it as `from seedlab.stats.multibootstrap import multibootstrap`.
from seedlab.stats.multibootstrap import Estimate, MultiBootstrapResult
from seedlab.stats.representations import (
    cka_distance,
    pairwise_layer_distances,
    procrustes_distance,
    svcca_distance,
)
from seedlab.stats.zhong import (
    DecayBound,
    NoiseDecomposition,
    decay_lower_bound,
    finetune_share,
    fisher_bh_decay,
    instance_accuracy,
    momentum,
    noise_decomposition,
)

__all__ = [
    "RunTable",
    "SeedGrid",
    "STANDARD_METHOD",
    "design_report",
    "summarize_metric",
    "label_counts",
    "consistency_all",
    "agreement_pairwise",
    "pairwise_disagreement",
    "mean_pairwise_jsd",
    "fleiss_kappa",
    "instability_measures",
    "subsample_insensitivity",
    "measure_agreement",
    "ranking_agreement",
    "svcca_distance",
    "procrustes_distance",
    "cka_distance",
    "pairwise_layer_distances",
    "instance_accuracy",
    "decay_lower_bound",
    "DecayBound",
    "fisher_bh_decay",
    "noise_decomposition",
    "NoiseDecomposition",
    "finetune_share",
    "momentum",
    "MultiBootstrapResult",
    "Estimate",
]
