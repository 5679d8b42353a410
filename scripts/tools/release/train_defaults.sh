#!/usr/bin/env bash
# Train and ship volgen's default models on the phantom corpus, in order (each run resumes from its checkpoints
# when interrupted): wavelet backbone -> VCMs on it (synthesis, super-resolution, inpainting) -> the ControlNet and
# Concat baselines -> patch autoencoder -> latent backbone -> the VCM on it. Usage: scripts/tools/release/train_defaults.sh [python]
set -euo pipefail
PY=${1:-.venv/bin/python}

run() {  # run <packaged config> <run dir> [overrides...]
    local config="volgen/configs/$1.yaml"
    if [ -f "$2/model/config.json" ] && [ ! "$config" -nt "$2/model/config.json" ]; then
        echo "== $1: done"; return
    fi
    local resume=""
    [ -d "$2/checkpoints" ] && resume="--resume"
    echo "== $1 $resume ($(date -u +%H:%M))"
    "$PY" -m volgen train "$1" output.dir="$2" "${@:3}" --no-progress $resume
}

ship() {  # ship <run dir> <name> <description>
    "$PY" scripts/tools/release/ship_model.py "$1/model" "$2" --description "$3"
}

run backbone_wavelet runs/backbone-wavelet
# Then whole volumes of the 144 training cases (`make phantoms/train-144/.done`): the crops teach tissue, whole
# volumes the anatomy's layout. (The shipped backbone had a 2400-step whole-volume stage with flips on every axis
# between these two; mirroring a brain upside down taught it an ellipsoid, and this stage replaced what it learnt.)
run backbone_wavelet runs/backbone-wavelet-lr init_from=runs/backbone-wavelet/model data.root=phantoms/train-144 \
    'data.crop=[96,112,96]' train.steps=3000 train.lr_schedule=cosine train.mixed_precision=bf16 train.checkpoint_every=100
ship runs/backbone-wavelet-lr volgen-wavelet-brain-2mm "wavelet-diffusion backbone, t1n/t1c/t2w/t2f, 2 mm"
run vcm_synthesis runs/vcm-synthesis
ship runs/vcm-synthesis volgen-vcm-synthesis-2mm "VCM: any missing MRI contrast from the others"
run controlnet_synthesis runs/controlnet-synthesis
run concat_synthesis runs/concat-synthesis
run vcm_super_resolution runs/vcm-super-resolution
ship runs/vcm-super-resolution volgen-vcm-super-resolution-2mm "VCM: 4x through-plane super-resolution"
run vcm_inpainting runs/vcm-inpainting-template
ship runs/vcm-inpainting-template volgen-vcm-inpainting-2mm "VCM: pseudo-healthy fill or lesion growth inside a mask, from a harmonic fill of the difference to a case-fitted template (training mean + 16 principal components fitted on the mask's shell; plus the training tumours' depth profile in lesion mode)"
run autoencoder runs/autoencoder-patch
run backbone_latent runs/backbone-latent-patch
ship runs/backbone-latent-patch volgen-latent-brain-2mm "latent-diffusion backbone (patch autoencoder + x0 U-Net)"
run vcm_synthesis_latent runs/vcm-synthesis-latent-patch
ship runs/vcm-synthesis-latent-patch volgen-vcm-synthesis-latent-2mm "VCM on the latent backbone: any missing MRI contrast from the others"
