"""The registered inpainting prior's atlas, registered once per training case and contrast.

The registered prior (volgen/modules/template_prior.py) registers its atlas to every item it fills: about 6 s per
item on 2 CPU cores, as long as a whole training step of batch 2. The fit depends on the case, the contrast and the
hole. Training's holes are a case's tumour dilated by 0 to `Inpainting.max_margin` voxels, so each case's atlas is
registered once per contrast to its healthy twin with the widest of those holes unseen, and every draw of the case
reuses it (cropped and flipped with the case). The prior never sees a voxel the item's own hole hides: a narrower hole
hides less, so in training the prior is at most a little worse than at sampling, never better. Random blob holes
(data.inpainting_blobs) are still registered as the sampler does.

The registrations are saved in the run folder, so that a resumed run does not register again.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from volgen.ops import dilate
from volgen.taskspec import task

CACHE_FILE = "registered-atlas.pt"


@torch.no_grad()
def attach_registered_atlases(prior, cases, run_dir: Path, progress: bool = True) -> None:
    """Give every case its `atlas` (C, D, H, W, float16): the prior's atlas of each contrast registered to the case's
    healthy twin without the widest training hole. Cases `run_dir`/CACHE_FILE holds are read from it; the others are
    registered and the file written again with them."""
    path = Path(run_dir) / CACHE_FILE
    saved = torch.load(path) if path.is_file() else {}
    missing = [case for case in cases if case.name not in saved]
    if missing and not prior.fitted:
        raise ValueError("the registered prior has no atlas yet: fit it (VCM.prepare) before registering it to cases")
    margin = task("inpainting").max_margin
    for case in tqdm(missing, desc="register the atlas to each case", disable=not progress or not missing):
        hole = dilate((case.seg > 0).float()[None, None], margin)[0, 0]
        saved[case.name] = torch.stack([prior.register_atlas(case.healthy[c:c + 1], 1.0 - hole, c)
                                        for c in range(len(case.healthy))]).half()
    for case in cases:
        case.atlas = saved[case.name]
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")           # a run stopped while saving keeps the previous file
        torch.save(saved, partial)
        partial.replace(path)
