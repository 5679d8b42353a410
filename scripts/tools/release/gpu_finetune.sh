#!/usr/bin/env bash
# Fine-tune the shipped modules on a lent CUDA machine (bare Python 3.12 with its own torch), within its 10-minute
# command limit: makes 288 phantom cases in parallel (48 + 96 of the default corpus, 144 more of seed 500), starts
# the runs as detached processes so they outlive one command (a later call with the machine still warm finds them
# running, or resumes them from their checkpoints), prints progress, then exports each run's newest EMA weights and
# packs them under $OUT (15 MB parts). Usage: scripts/tools/release/gpu_finetune.sh SECONDS [DEPS_DIR]
#
# Prepare DEPS_DIR (default .gpu, git-ignored, carried) here first: DEPS_DIR/whl holds the wheels of monai, nibabel
# and importlib_metadata (see ../shared/gpu/wheels.sh), DEPS_DIR/site/nilearn/datasets/data the three MNI152 maps
# the phantoms read (the whole nilearn wheel is 11 MB of the 64 MB that may travel), DEPS_DIR/steps.sh the runs and
# their lengths, e.g. `declare -A STEPS=([syn]=2500 [sr]=5000 [cn]=1700)` (a changed length restarts that run with
# --resume), optionally `declare -A EXTRA=([syn]="train.lr=2e-4")` for overrides on top of the ones below.
T0=$(date +%s); LIMIT=${1:-560}; DEPS=${2:-.gpu}
[ -d /tmp/site/monai ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$DEPS"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/$DEPS/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
nvidia-smi -L
if [ ! -f phantoms/train-288/.done ]; then
  gen() { python3 -m volgen phantom --n 12 --seed "$1" --start "$2" --no-pet --no-montage --out "phantoms/s$1" > /dev/null 2>&1; }
  for i in $(seq 0 12 36); do gen 100 "$i" & done
  for i in $(seq 0 12 84); do gen 400 "$i" & done
  for i in $(seq 0 12 132); do gen 500 "$i" & done
  wait
  mkdir -p phantoms/train-288
  for d in phantoms/s*/phantom-*; do ln -sfn "../$(basename "$(dirname "$d")")/$(basename "$d")" phantoms/train-288/; done
  echo "phantoms: $(ls phantoms/train-288 | wc -l) cases after $(( $(date +%s) - T0 )) s"
  touch phantoms/train-288/.done
fi
COMMON="data.root=phantoms/train-288 train.lr_schedule=cosine train.mixed_precision=bf16"
declare -A CFG=([syn]=vcm_synthesis [inp]=vcm_inpainting [sr]=vcm_super_resolution [lat]=vcm_synthesis_latent
                [cn]=controlnet_synthesis [cc]=concat_synthesis)
# The shipped module to fine-tune; the ControlNet and Concat baselines start from the backbone, as their configs do.
declare -A INIT=([syn]=volgen-vcm-synthesis-2mm [inp]=volgen-vcm-inpainting-2mm [sr]=volgen-vcm-super-resolution-2mm
                 [lat]=volgen-vcm-synthesis-latent-2mm)
declare -A ARGS=(   # the synthesis table takes 5 minutes to refit on 288 cases: keep the shipped one
  [syn]="train.refit_prior=false data.contrast_dropout=0.2 train.batch_size=4 train.lr=3e-4 train.checkpoint_every=200 train.log_every=50"
  [inp]="train.batch_size=4 train.lr=3e-4 train.checkpoint_every=50 train.log_every=10"
  [sr]="data.crop=[64,64,64] train.batch_size=8 train.lr=2e-4 train.checkpoint_every=500 train.log_every=100"
  [lat]="train.refit_prior=false data.contrast_dropout=0.2 train.timestep_weights=[4,4,1,1,1,1,1,1,1,1] train.batch_size=4 train.lr=2e-4 train.checkpoint_every=200 train.log_every=50"
  [cn]="data.contrast_dropout=0.2 train.batch_size=8 train.checkpoint_every=100 train.log_every=50"
  [cc]="data.contrast_dropout=0.2 train.batch_size=8 train.checkpoint_every=100 train.log_every=50")
declare -A EXTRA=()
source "$DEPS/steps.sh"
RUNS="${!STEPS[*]}"
for n in $RUNS; do
  dir=runs/gpu-$n; steps=${STEPS[$n]}
  if pgrep -f "output.dir=$dir " > /dev/null; then
    [ "$(cat $dir/steps.txt)" = "$steps" ] && continue
    pkill -f "output.dir=$dir "; sleep 8
  fi
  init=${INIT[$n]:+init_from=${INIT[$n]}}
  [ -d "$DEPS/back/$n/model" ] && init=init_from=$DEPS/back/$n/model   # a fresh machine: the last model brought back
  resume=""; ls -d $dir/checkpoints/step-* > /dev/null 2>&1 && resume=--resume
  mkdir -p $dir; echo "$steps" > $dir/steps.txt
  echo "launch $n: steps $steps init $init $resume"
  setsid nohup python3 -m volgen train ${CFG[$n]} $init $COMMON ${ARGS[$n]} ${EXTRA[$n]} train.steps="$steps" \
    output.dir=$dir --no-progress $resume >> $dir.log 2>&1 < /dev/null &
done
while [ $(( $(date +%s) - T0 )) -lt $(( LIMIT - 75 )) ]; do
  sleep 30
  pgrep -f "volgen train" > /dev/null || { echo "no training runs alive"; break; }
  echo "--- $(( $(date +%s) - T0 )) s  gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)  free $(free -g | awk '/Mem/ {print $7}') GiB"
  for n in $RUNS; do echo "$n: $(tail -1 runs/gpu-$n/metrics.csv 2>/dev/null) | $(tail -c 300 runs/gpu-$n.log | tr '\n\r' '  ')"; done
done
pids=""
for n in $RUNS; do
  if ls -d runs/gpu-$n/checkpoints/step-* > /dev/null 2>&1; then
    python3 -m volgen train runs/gpu-$n/run-config.json --export > runs/gpu-$n-export.log 2>&1 & pids="$pids $!"
  fi
done
wait $pids          # not the detached training runs
tar cf /tmp/back.tar runs/gpu-*/model runs/gpu-*/metrics.csv runs/gpu-*/run-config.json runs/gpu-*.log 2>/dev/null
split -b 15M -d /tmp/back.tar "$OUT/back.tar."
ls -la "$OUT"; echo "done after $(( $(date +%s) - T0 )) s"
