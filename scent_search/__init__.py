"""scent-search: architecture and hyperparameter search for MambaSCENTHybrid under a measured memory budget."""

from scent_search.config import ModelConfig, TargetShape, TrainConfig

__all__ = ["ModelConfig", "TargetShape", "TrainConfig", "__version__"]
__version__ = "0.1.0"
