"""The BERT sizes seedlab builds have the shapes and sizes the papers state, checked against the papers'
numbers written here, not against seedlab's own table.

Turc et al. (2019), "Well-Read Students Learn Better": 24 miniatures, L (layers) in {2, 4, 6, 8, 10, 12} x
H (hidden size) in {128, 256, 512, 768}, with H/64 attention heads and a 4H feed-forward layer; named
BERT-Tiny L=2/H=128, BERT-Mini L=4/H=256, BERT-Small L=4/H=512, BERT-Medium L=8/H=512, and L=12/H=768 is
BERT-Base. Devlin et al. (2019), BERT: BERT-Base L=12, H=768, A=12, 110M parameters; BERT-Large L=24,
H=1024, A=16, 340M parameters, with a 30,522-token WordPiece vocabulary.
"""

import pytest
import torch

from seedlab.train.models import BERT_SIZES, bert_config

TURC_LAYERS = (2, 4, 6, 8, 10, 12)
TURC_HIDDEN = (128, 256, 512, 768)
PAPER_SHAPES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512),  # Turc et al.
                "base": (12, 768), "large": (24, 1024)}  # Devlin et al.
PAPER_HEADS = {"base": 12, "large": 16}  # Devlin et al.'s A
PAPER_PARAMETERS = {"base": 110e6, "large": 340e6}  # Devlin et al., rounded as they state them
BERT_VOCAB = 30522


def test_the_sizes_are_the_papers_names_and_shapes():
    assert BERT_SIZES == PAPER_SHAPES
    for name in ("tiny", "mini", "small", "medium", "base"):  # each one of Turc et al.'s 24 miniatures
        layers, hidden = BERT_SIZES[name]
        assert layers in TURC_LAYERS and hidden in TURC_HIDDEN, name


@pytest.mark.parametrize("size", list(PAPER_SHAPES))
def test_the_built_config_has_the_paper_shape(size):
    layers, hidden = PAPER_SHAPES[size]
    config = bert_config(size, vocab_size=BERT_VOCAB)
    assert (config.num_hidden_layers, config.hidden_size) == (layers, hidden)
    assert config.num_attention_heads == hidden // 64 == PAPER_HEADS.get(size, hidden // 64)
    assert config.intermediate_size == 4 * hidden


@pytest.mark.parametrize("size", list(PAPER_PARAMETERS))
def test_the_built_model_has_the_paper_parameter_count(size):
    from transformers import BertModel

    with torch.device("meta"):  # shapes only: no memory for BERT-Large's weights
        model = BertModel(bert_config(size, vocab_size=BERT_VOCAB))
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(PAPER_PARAMETERS[size], rel=0.03), count  # 109.5M and 335.1M
