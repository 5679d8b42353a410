"""Train a conditioning module (VCM, ControlNet or Concat) on a frozen backbone.

    accelerate launch scripts/train_vcm.py --config configs/vcm_synthesis.yaml [--resume] [key=value ...]
    python scripts/train_vcm.py --config configs/vcm_synthesis.yaml train.steps=100
"""
from volgen.training.cli import main

if __name__ == "__main__":
    main(kinds=("module",))
