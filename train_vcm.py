"""The design card's entry point for training a conditioning module: `accelerate launch train_vcm.py CONFIG
[section.key=value ...] [--resume]` runs `volgen train` (the same as `accelerate launch -m volgen train ...`)."""
import sys

from volgen.cli import entry

if __name__ == "__main__":
    sys.argv[1:1] = ["train"]
    entry()
