# The README's two commands (`make demo`, `make test`) and `make bench`, each from a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
# Re-install when the package metadata or the pins change.
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean corpus baselines
.PHONY: calibrate bench-downstream bench-downstream-without bench-lesion bench-few-labels bench-robustness bench-pseudo-healthy gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first: anything torch-dependent installed before it pulls a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -c constraints.txt -e ".[phantom,torchio,test]"
	touch $(STAMP)

install: $(STAMP)

# A phantom case, its t1c synthesised from t1n, t2w and t2f with the shipped default, scored against the true t1c.
DEMO_CASE := demo_out/phantom-s0-0000/phantom-s0-0000
DEMO_SYN  := demo_out/synthesized/phantom-s0-0000/phantom-s0-0000
demo: $(STAMP)
	$(PY) -m volgen phantom --n 1 --seed 0 --spacing 2 --no-pet --out demo_out --overwrite
	$(PY) -m volgen synthesize --cond t1n,t2w,t2f demo_out/phantom-s0-0000 -o demo_out/synthesized --overwrite
	$(PY) -m volgen evaluate --normalize --pred $(DEMO_SYN)-t1c.nii.gz --ref $(DEMO_CASE)-t1c.nii.gz \
	    --mask brain=$(DEMO_CASE)-brainmask.nii.gz --mask tumour=$(DEMO_CASE)-seg.nii.gz \
	    --json $(DEMO_SYN)-t1c-metrics.json --overwrite
	@echo "demo: montage $(DEMO_SYN)-synthesis.png, sidecar $(DEMO_SYN)-synthesis.json"

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP) corpus baselines
	$(PY) scripts/benchmarks/bench_phantom.py
	$(PY) scripts/benchmarks/bench_sampling.py
	$(PY) scripts/benchmarks/bench_quality.py
	$(PY) scripts/benchmarks/bench_cli.py
	$(PY) scripts/benchmarks/bench_patlak.py
	$(PY) scripts/benchmarks/bench_kernels.py

# The phantom corpus the shipped models were trained on (seed 100) and the held-out cases (seed 200); the same
# training cases with their PET studies for the PET prior (bench_patlak simulates its held-out PET in memory).
corpus: phantoms/train/.done phantoms/heldout/.done phantoms/pet-train/.done phantoms/train-144/.done \
	phantoms/val/.done
phantoms/pet-train/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 48 --seed 100 --no-montage --out phantoms/pet-train --overwrite
	touch $@
phantoms/train/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 48 --seed 100 --no-pet --no-montage --out phantoms/train --overwrite
	touch $@
# The PET prior's next training set (issue 42: hot tumours came out low): a hot and a cold spot per case and the
# tumour's uptake drawn from 0.7x to 2x (seed 700: no bench uses it). Train with `volgen train backbone_pet
# init_from=volgen-pet-prior-2mm data.root=phantoms/pet-train-hot output.dir=runs/backbone-pet-hot`, then --resume.
phantoms/pet-train-hot/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 48 --seed 700 --no-montage --pet-focal --pet-tumour-uptake 0.7,2.0 \
		--out phantoms/pet-train-hot --overwrite
	touch $@
phantoms/heldout/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 20 --seed 200 --no-pet --out phantoms/heldout --overwrite
	touch $@
# 96 more training cases (seed 400) and the 144 together (links, no copies): the synthesis module overfitted the 48
# (its margin over the regression was 0.5 dB larger on training cases than on held-out ones). Validation cases
# (seed 300) choose between training stages, so the held-out ones only report.
phantoms/train-extra/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 96 --seed 400 --no-pet --no-montage --out phantoms/train-extra --overwrite
	touch $@
phantoms/train-144/.done: phantoms/train/.done phantoms/train-extra/.done
	mkdir -p phantoms/train-144
	for d in phantoms/train/phantom-* phantoms/train-extra/phantom-*; do \
		ln -sfn ../$$(basename $$(dirname $$d))/$$(basename $$d) phantoms/train-144/$$(basename $$d); done
	touch $@
# 48 training phantoms at 1 mm (seed 100), for a synthesis table fitted on 1 mm cases resampled to its grid as the
# job resamples a user's (scripts/tools/release/swap_table_prior.py --train phantoms/train-144,phantoms/train-1mm
# --bias-correction; session 51, not shipped: docs/architecture.md, bias fields).
phantoms/train-1mm/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 48 --seed 100 --spacing 1 --no-pet --no-montage --out phantoms/train-1mm --overwrite
	touch $@
phantoms/val/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 12 --seed 300 --no-pet --out phantoms/val --overwrite
	touch $@
# Calibration cases (seed 600), never trained or selected on: each shipped module's error model, which turns the
# spread over its samples into the expected absolute error its uncertainty maps hold, is fitted on them.
phantoms/calib/.done: | $(STAMP)
	$(PY) -m volgen phantom --n 12 --seed 600 --no-pet --no-montage --out phantoms/calib --overwrite
	touch $@
calibrate: phantoms/calib/.done
	$(PY) -m volgen calibrate volgen-vcm-inpainting-2mm --task inpainting --cases phantoms/calib --write
	$(PY) -m volgen calibrate volgen-vcm-super-resolution-2mm --task super_resolution --cases phantoms/calib --write
	$(PY) -m volgen calibrate volgen-vcm-synthesis-2mm --task synthesis --cases phantoms/calib --write
	$(PY) -m volgen calibrate volgen-vcm-synthesis-latent-2mm --task synthesis --cases phantoms/calib --write

# The ControlNet and Concat baselines of bench_quality.py (not shipped), as CPU-sized runs of their configs; the
# bench figures in the notes come from the GPU recipe in the configs' headers. An interrupted run resumes.
baselines: runs/controlnet-synthesis/model/config.json runs/concat-synthesis/model/config.json
runs/%-synthesis/model/config.json: volgen/configs/%_synthesis.yaml phantoms/train/.done
	$(PY) -m volgen train $< --no-progress $(if $(wildcard runs/$*-synthesis/checkpoints),--resume)

# Does volgen help a segmenter (BraSyn's protocol): three SegResNets trained on the complete training phantoms (two
# seeds on the 48, one on the 144; each resumes from its checkpoints: about an hour on 2 CPU cores for 3000 steps),
# their probabilities averaged (one segmenter's draw moved the t1c ratio by 0.03), then scored on the held-out
# phantoms with each contrast missing and replaced by each arm. bench_out/downstream.json, the table,
# bench_out/downstream-<contrast>.png
SEGMENTERS = runs/segmenter,runs/segmenter-seed1,runs/segmenter-144
bench-downstream: phantoms/train/.done phantoms/train-144/.done phantoms/heldout/.done
	$(PY) scripts/benchmarks/segmenter.py --train phantoms/train --run runs/segmenter --steps 3000
	$(PY) scripts/benchmarks/segmenter.py --train phantoms/train --run runs/segmenter-seed1 --steps 3000 --seed 1
	$(PY) scripts/benchmarks/segmenter.py --train phantoms/train-144 --run runs/segmenter-144 --steps 3000
	$(PY) scripts/benchmarks/bench_downstream.py --segmenter $(SEGMENTERS) --heldout phantoms/heldout

# The same with, for t1c and t2f, a segmenter trained without that contrast (same steps; an hour more each on 2 CPU
# cores): what the other three contrasts carry of each region, the row a synthesis from them is measured against.
bench-downstream-without: phantoms/train/.done phantoms/heldout/.done
	$(PY) scripts/benchmarks/segmenter.py --train phantoms/train --run runs/segmenter --steps 3000
	for c in t1c t2f; do $(PY) scripts/benchmarks/segmenter.py --train phantoms/train \
		--run runs/segmenter-without-$$c --steps 3000 --without $$c || exit 1; done
	$(PY) scripts/benchmarks/bench_downstream.py --segmenter runs/segmenter --heldout phantoms/heldout \
		--targets t1c,t2f --without-runs t1c=runs/segmenter-without-t1c,t2f=runs/segmenter-without-t2f

# Labelled tumour insertion (volgen inpaint CASE --mask LABELS --mode lesion) on the held-out phantoms' healthy twins,
# against the twin and the label table (and 20 training phantoms' real tumours: the W1's floor):
# bench_out/lesion-insertion.json and .png.
bench-lesion: phantoms/heldout/.done phantoms/train/.done
	$(PY) scripts/benchmarks/bench_lesion.py --cases phantoms/heldout --ideal phantoms/train

# Few labels: segmenters on N = 4, 8, 16 labelled phantoms, plain, with a second tumour inserted into each labelled
# case ("into") and with tumours inserted into healthy twins ("volgen"), 3 seeds, 1000 steps each
# (runs/few-labels-1000-grain keeps every run and made case: the bench resumes). bench_out/few-labels.json, the table.
bench-few-labels: phantoms/train/.done phantoms/heldout/.done
	$(PY) scripts/benchmarks/bench_few_labels.py

# Missing-contrast robustness: a segmenter trained with RandomContrastDropout + SynthesizeMissing against plain
# training, tested with t1c or t2f missing (given as volgen's mean, or absent); 3 seeds (resumes under runs/robustness)
bench-robustness: phantoms/train/.done phantoms/heldout/.done
	$(PY) scripts/benchmarks/bench_robustness.py

# Pseudo-healthy fill on users' masks (the tumour, grown by 1-2 voxels, blobs in healthy tissue) on fresh phantom
# seeds, case by case against the exact harmonic fill
bench-pseudo-healthy: $(STAMP)
	$(PY) scripts/benchmarks/bench_pseudo_healthy.py

# The GPU path in one command: tests with the kernels compiled, bench_kernels, every job with --device cuda against
# the CPU, 20 training steps and a resume. Results in $$OUT (the device tool's folder) or bench_out/gpu-check.
# Without CUDA it runs the same steps at tiny sizes on the CPU (tests/test_gpu_check.py does).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) scripts/tools/gpu_check.py --out $${OUT:-bench_out/gpu-check}

clean:
	rm -rf $(VENV) demo_out bench_out runs
