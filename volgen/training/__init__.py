"""The training loop behind scripts/train_*.py (issue 4); the diffusion objective lives in `objectives`."""
from volgen.training.objectives import diffusion_loss, noised

__all__ = ["diffusion_loss", "noised"]
