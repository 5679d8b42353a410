#!/usr/bin/env bash
# Train and ship volgen's default models on the phantom corpus, in order (each run resumes from its checkpoints
# when interrupted): wavelet backbone -> VCMs on it (synthesis, super-resolution, inpainting) -> the ControlNet and
# Concat baselines -> KL autoencoder -> latent backbone. Usage: scripts/train_defaults.sh [python]
set -euo pipefail
PY=${1:-.venv/bin/python}

run() {  # run <script> <config> <run dir>
    if [ -f "$3/model/config.json" ] && [ ! "$2" -nt "$3/model/config.json" ]; then
        echo "== $2: done"; return
    fi
    local resume=""
    [ -d "$3/checkpoints" ] && resume="--resume"
    echo "== $2 $resume ($(date -u +%H:%M))"
    "$PY" "scripts/$1" --config "$2" --no-progress $resume
}

ship() {  # ship <run dir> <name> <description>
    "$PY" scripts/ship_model.py "$1/model" "$2" --description "$3"
}

run train_backbone.py configs/backbone_wavelet.yaml runs/backbone-wavelet
ship runs/backbone-wavelet volgen-wavelet-brain-2mm "wavelet-diffusion backbone, t1n/t1c/t2w/t2f, 2 mm"
run train_vcm.py configs/vcm_synthesis.yaml runs/vcm-synthesis
ship runs/vcm-synthesis volgen-vcm-synthesis-2mm "VCM: any missing MRI contrast from the others"
run train_vcm.py configs/controlnet_synthesis.yaml runs/controlnet-synthesis
run train_vcm.py configs/concat_synthesis.yaml runs/concat-synthesis
run train_vcm.py configs/vcm_super_resolution.yaml runs/vcm-super-resolution
ship runs/vcm-super-resolution volgen-vcm-super-resolution-2mm "VCM: 4x through-plane super-resolution"
run train_vcm.py configs/vcm_inpainting.yaml runs/vcm-inpainting
ship runs/vcm-inpainting volgen-vcm-inpainting-2mm "VCM: pseudo-healthy fill or lesion growth inside a mask"
run train_backbone.py configs/autoencoder.yaml runs/autoencoder
run train_backbone.py configs/backbone_latent.yaml runs/backbone-latent
ship runs/backbone-latent volgen-latent-brain-2mm "latent-diffusion backbone (KL autoencoder + rectified flow)"
run train_vcm.py configs/vcm_synthesis_latent.yaml runs/vcm-synthesis-latent
ship runs/vcm-synthesis-latent volgen-vcm-synthesis-latent-2mm "VCM on the latent backbone: any missing MRI contrast from the others"
