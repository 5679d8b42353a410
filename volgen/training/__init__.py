"""The training loop behind scripts/train_*.py: configs, data, objectives, EMA, checkpoint/resume."""
from volgen.training.objectives import diffusion_loss, noised

__all__ = ["diffusion_loss", "noised"]
