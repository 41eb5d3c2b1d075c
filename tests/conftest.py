import os

import pytest
import torch

from scent_search.config import ModelConfig

# Two cores, several processes: one intra-op thread per test process keeps runs predictable.
torch.set_num_threads(int(os.environ.get("SCENT_TEST_THREADS", "1")))


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    """A model small enough for CPU tests, with every part of the design present (2 scales, FF stacks)."""
    return ModelConfig(dim=32, num_lp_tokens=16, feature_dim=16, hidden_dim=32, mult=2, num_processor_layers=1,
                       num_decoder_layers=2, sigma_ls=(32.0, 8.0))
