"""Artifacts are data, never code: nothing in seedlab unpickles (docs/cluster.md, "Security").

Reading a run's artifacts (`seedlab analyze`, a checkpoint download) must not run code from whoever logged
them, so seedlab reads parquet, JSON and safetensors only. This scans seedlab's source for the ways Python
code unpickles: importing pickle-family modules, `torch.load` without `weights_only=True`, numpy's
`allow_pickle=True`, pandas' `read_pickle`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = sorted((Path(__file__).resolve().parents[1] / "seedlab").rglob("*.py"))
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def unpickling_calls(source: str) -> list[str]:
    """Each place in `source` that can unpickle, as 'line N: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            kwargs = {k.arg: k.value for k in node.keywords}
            if name.endswith("torch.load") or name == "load" and "weights_only" in kwargs:
                safe = isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True
                if not safe:
                    found.append(f"line {node.lineno}: {name}(...) without weights_only=True")
            if isinstance(kwargs.get("allow_pickle"), ast.Constant) and kwargs["allow_pickle"].value is True:
                found.append(f"line {node.lineno}: {name}(..., allow_pickle=True)")
            if name.endswith("read_pickle"):
                found.append(f"line {node.lineno}: {name}(...)")
    return found


def test_the_scan_finds_each_way_to_unpickle():
    bad = ("import pickle\nfrom joblib import load\nimport torch\n"
           "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\n"  # without, and with weights_only off
           "import numpy as np\nnp.load('a.npy', allow_pickle=True)\nimport pandas as pd\npd.read_pickle('x')\n")
    assert len(unpickling_calls(bad)) == 6
    assert unpickling_calls("import torch\ntorch.load('m.pt', weights_only=True)\nimport numpy as np\n"
                            "np.load('a.npy')\n") == []


@pytest.mark.parametrize("path", SOURCE, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_seedlab_never_unpickles(path):
    assert unpickling_calls(path.read_text()) == []
