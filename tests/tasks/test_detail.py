"""Detail transfer (volgen/tasks/detail.py, `synthesize(..., detail=True)`): on a 1 mm case the synthesis is the
module's prior on the 1 mm conditions plus its 2 mm correction, written on the case's own grid."""
import numpy as np
import torch

from tests.helpers import write_brats_case
from volgen import hub
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.modules import VCM, VCMConfig
from volgen.tasks.synthesis import synthesize


def test_a_1mm_case_gets_its_conditions_detail_on_its_own_grid(tmp_path, tiny_models):
    backbone = hub.from_pretrained(tiny_models["backbone"])
    module = VCM(backbone, VCMConfig(conditions=MRI_CONTRASTS, channels=(8, 16), encoder_channels=(8,), features=8,
                                     head_channels=8, num_head_channels=8, norm_num_groups=8, prior="regression"))
    module.prior.fit([torch.rand(4, 16, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    hub.save_pretrained(module, tmp_path / "synthesis")
    folder = write_brats_case(tmp_path, "fine", shape=(40, 44, 36), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    cases = {c: folder / f"fine-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
    settings = dict(target="t1c", model=str(tmp_path / "synthesis"), steps=2, progress=False)
    plain = synthesize(cases, **settings).outputs["t1c"]
    fine = synthesize(cases, detail=True, **settings).outputs["t1c"]
    assert fine.shape == plain.shape == (40, 44, 36) and fine.array.dtype == np.float32
    np.testing.assert_array_equal(fine.affine, plain.affine)
    assert 0.0 <= fine.array.min() and fine.array.max() <= 1.0
    # the 1 mm output carries voxel-scale structure the resampled 2 mm one lacks
    def roughness(a):
        return float(np.abs(np.diff(a, axis=0)).mean())
    assert roughness(fine.array) > roughness(plain.array)
