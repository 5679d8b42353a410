"""Train a backbone: the KL autoencoder, or a latent / wavelet diffusion U-Net.

    accelerate launch scripts/train_backbone.py --config configs/backbone_wavelet.yaml [--resume] [key=value ...]
"""
from volgen.training.cli import main

if __name__ == "__main__":
    main(kinds=("autoencoder", "backbone"))
