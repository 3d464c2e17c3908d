"""One calling convention across seedlab.stats: data first, options keyword-only, one name per concept, one
default for `paired`, and a numpydoc docstring with the formula's paper on every public function."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ("agreement", "aso", "design", "ensembles", "expected_max", "method_comparison", "metrics",
           "multibootstrap", "multiplicity", "representations", "seed_budget", "simulate", "variance", "zhong")
# optional *data* (arrays that go with the data, not settings) may stay positional, after the data
OPTIONAL_DATA = {"probs", "metric_values", "values", "labels", "preds_intervention", "seeds_intervention"}
# other spellings of n_bootstrap and rng that must not come back
SYNONYMS = {"n_boot": "n_bootstrap", "draws": "n_subsamples", "n_draws": "n_subsamples", "rng_seed": "rng",
            "seed": "rng", "random_state": "rng"}


def public_functions():
    for name in MODULES:
        module = importlib.import_module(f"seedlab.stats.{name}")
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isfunction(obj):
                yield f"{name}.{attr}", obj
            elif inspect.isclass(obj) and obj.__module__ == module.__name__:
                for meth_name, meth in vars(obj).items():
                    fn = meth.__func__ if isinstance(meth, classmethod) else meth
                    if inspect.isfunction(fn) and not meth_name.startswith("_") and meth_name != "as_dict":
                        yield f"{name}.{attr}.{meth_name}", fn


FUNCTIONS = dict(public_functions())


def test_every_module_lists_its_public_functions():
    for name in MODULES:
        module = importlib.import_module(f"seedlab.stats.{name}")
        defined = {n for n, f in vars(module).items() if inspect.isfunction(f) and f.__module__ == module.__name__
                   and not n.startswith("_")}
        assert defined <= set(module.__all__), (name, defined - set(module.__all__))


@pytest.mark.parametrize("qualname", sorted(FUNCTIONS))
def test_options_are_keyword_only_and_named_once(qualname):
    params = inspect.signature(FUNCTIONS[qualname]).parameters
    for p in params.values():
        assert p.name not in SYNONYMS, f"{qualname}: {p.name!r} is spelled {SYNONYMS[p.name]!r} in seedlab.stats"
        if p.default is not inspect.Parameter.empty and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert p.name in OPTIONAL_DATA, f"{qualname}: option {p.name!r} must be keyword-only"


@pytest.mark.parametrize("qualname", sorted(q for q in FUNCTIONS if q.count(".") == 1))
def test_numpydoc_with_parameters_returns_and_references(qualname):
    doc = inspect.getdoc(FUNCTIONS[qualname]) or ""
    params = [p for p in inspect.signature(FUNCTIONS[qualname]).parameters if p not in ("self", "cls")]
    if params:
        assert "Parameters\n----------" in doc, qualname
        for p in params:  # every parameter is described (alone or in a "a, b : ..." line)
            assert any(line.split(" : ")[0].replace(" ", "").split(",").count(p) for line in doc.splitlines()
                       if " : " in line and not line.startswith(" ")), (qualname, p)
    assert "Returns\n-------" in doc, qualname
    assert "References\n----------" in doc, qualname


def test_paired_has_one_default_everywhere():
    """Unpaired unless asked: pairing is valid only when seed ids are the same checkpoints in both arms."""
    from seedlab.analysis.analyze import AnalysisOptions
    from seedlab.cli import build_parser
    from seedlab.stats.multibootstrap import multibootstrap

    default = inspect.signature(multibootstrap).parameters["paired"].default
    cli = build_parser().parse_args(["analyze", "--experiment", "e"])
    assert default is False and AnalysisOptions().paired is False and cli.paired is False


def test_no_name_clash_with_the_mitigation_methods():
    """`METHODS` means the mitigation methods (seedlab.train.mitigation); the estimator variants are ESTIMATORS."""
    from seedlab.stats import expected_max

    assert not hasattr(expected_max, "METHODS") and expected_max.ESTIMATORS == ("with_replacement", "unbiased")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("seedlab.stats.methods")
