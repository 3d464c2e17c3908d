"""Model weights are read from safetensors only: every model `from_pretrained(` call in seedlab passes
`use_safetensors=True` (so transformers never falls back to unpickling a `*.bin`), and a model that has only
pickled weights is a one-line error. Tokenizer loads read JSON and vocab files and are not model loads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from seedlab.errors import SeedlabError

SOURCE = sorted((Path(__file__).resolve().parents[1] / "seedlab").rglob("*.py"))


def unsafe_model_loads(source: str) -> list[str]:
    """Each `X.from_pretrained(...)` in `source` that may read pickled weights, as 'line N: X'. Tokenizer loads
    (X ending in Tokenizer or TokenizerFast) are left out: they read no weights."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            receiver = ast.unparse(node.func.value)
            if receiver.endswith(("Tokenizer", "TokenizerFast")):
                continue
            flag = next((k.value for k in node.keywords if k.arg == "use_safetensors"), None)
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"line {node.lineno}: {receiver}")
    return found


def test_the_scan_finds_model_loads_without_the_flag():
    bad = ("from transformers import AutoModel, BertModel, AutoTokenizer\n"
           "AutoModel.from_pretrained('x')\nBertModel.from_pretrained('x', use_safetensors=False)\n"
           "flag = True\nAutoModel.from_pretrained('x', use_safetensors=flag)\n"  # not visibly True
           "AutoTokenizer.from_pretrained('x')\n")
    assert unsafe_model_loads(bad) == ["line 2: AutoModel", "line 3: BertModel", "line 5: AutoModel"]
    assert unsafe_model_loads("AutoModel.from_pretrained('x', num_labels=2, use_safetensors=True)\n") == []


@pytest.mark.parametrize("path", SOURCE, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_model_load_in_seedlab_passes_use_safetensors(path):
    assert unsafe_model_loads(path.read_text()) == []


@pytest.mark.needs_data
def test_a_model_with_only_pickled_weights_is_refused(tmp_path):
    from transformers import BertForSequenceClassification

    from seedlab.data.tokenizer import load_tokenizer
    from seedlab.train.models import bert_config, resolve_model

    tokenizer = load_tokenizer()
    model = BertForSequenceClassification(bert_config("tiny", tokenizer.vocab_size))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle, as old hub checkpoints ship
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(SeedlabError, match=r"cannot load model .*safetensors") as raised:
        resolve_model(str(tmp_path), 0, num_labels=2, init_seed=0)
    assert "\n" not in str(raised.value)
