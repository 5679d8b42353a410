"""A healthy fill on a grid finer than the model's gets the registered atlas's fine detail (tasks/fine_fill.py): a 1 mm
case whose anatomy is the fine atlas itself is filled closer to the truth with it than without; the case's warp,
registered once by the job and handed to the sampler's prior, gives what the prior's own registration gives; a case
on the model's grid and a lesion are left as they were."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from volgen import hub
from volgen.io.volume import Volume
from volgen.modules import build_conditioner, fine_atlas
from volgen.tasks.fine_fill import case_registration, prior_options
from volgen.tasks.inpainting import inpaint, on_model_grid, prior_fill
from volgen.tasks.models import backbone_of, load_model
from volgen.taskspec import TASKS
from volgen.training.data import CaseArrays

from tests.modules.test_template_prior import INPAINTING
from tests.modules.test_vcm_codec_path import _backbone


def _anatomy(seed, size=16) -> torch.Tensor:
    x = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((size,) * 3), 2.0)
    return torch.from_numpy((0.6 * x / np.abs(x).max()).astype(np.float32))


def _stripes(size=32) -> torch.Tensor:
    """1 mm detail nothing of which is left on a 2 mm grid: +-0.15 alternating slices, fading to none at the edge."""
    stripes = torch.zeros((size,) * 3)
    stripes[::2], stripes[1::2] = 0.15, -0.15
    return stripes


@pytest.fixture(scope="module")
def fine_module(tmp_path_factory):
    """(a tiny inpainting module folder whose registered atlas has the fine detail `_stripes`, the same without it)."""
    root = tmp_path_factory.mktemp("fine")
    backbone = _backbone()
    hub.save_pretrained(backbone, root / "backbone")
    anatomy = _anatomy(0)
    twins = [torch.stack([(0.5 + 0.2 * c) * anatomy for c in range(4)]) for _ in range(2)]
    seg = torch.zeros(16, 16, 16, dtype=torch.int64)
    seg[5:10, 5:10, 5:10] = 2
    module = build_conditioner("vcm", backbone, {**INPAINTING, "prior_registered": True})
    module.prepare([CaseArrays(f"c{i}", t + 0.1, healthy=t, seg=seg) for i, t in enumerate(twins)])
    hub.save_pretrained(module, root / "plain")
    module.prior.use_fine_detail(_stripes().expand(4, -1, -1, -1).clone())
    hub.save_pretrained(module, root / "fine")
    return root / "fine", root / "plain"


def _case(module_folder, spacing):
    """(the healthy case on a `spacing` grid: the module's fine atlas (t2f) at 1 mm, its 2 mm block means at 2 mm;
    a mask)."""
    fine = load_model("inpainting", str(module_folder), device="cpu").prior
    contrast = 3
    atlas = fine_atlas.upsampled(fine.atlas[contrast][None])[0] + fine.fine[contrast]
    if spacing == 2.0:
        atlas = torch.nn.functional.avg_pool3d(atlas[None, None], 2)[0, 0]
    image = (300.0 + 200.0 * atlas).numpy().astype(np.float32)
    mask = np.zeros(image.shape, np.int16)
    n = image.shape[0]
    mask[n // 3: 2 * n // 3, n // 3: 2 * n // 3, n // 4: 3 * n // 4] = 1
    return Volume(image, np.diag([spacing] * 3 + [1.0]), name="case-t2f"), mask


def test_a_one_mm_fill_gets_the_atlas_detail_and_is_closer_to_the_truth(fine_module):
    fine, plain = fine_module
    volume, mask = _case(fine, 1.0)
    inside = mask > 0
    errors = {}
    for name, folder in (("fine", fine), ("plain", plain)):
        filled = prior_fill(volume, inside, load_model("inpainting", str(folder), device="cpu"), "t2f")
        np.testing.assert_array_equal(filled[~inside], volume.array[~inside])
        errors[name] = np.abs(filled - volume.array)[inside].mean()
    assert errors["fine"] < 0.5 * errors["plain"]                 # the stripes are 30 units; without them, all lost
    settings = dict(contrast="t2f", steps=2, progress=False, device="cpu")
    job = {name: inpaint(volume, volume.with_array(mask), model=str(folder), **settings)
           for name, folder in (("fine", fine), ("plain", plain))}
    out = job["fine"].outputs["inpainted"].array
    np.testing.assert_array_equal(out[~inside], volume.array[~inside])
    assert np.abs(out - volume.array)[inside].mean() < np.abs(job["plain"].outputs["inpainted"].array
                                                              - volume.array)[inside].mean()


def test_the_registration_handed_to_the_sampler_is_the_priors_own_and_a_two_mm_case_is_unchanged(fine_module):
    fine, plain = fine_module
    model = load_model("inpainting", str(fine), device="cpu")
    volume, mask = _case(fine, 1.0)
    pre, image, keep = on_model_grid(volume, mask > 0, model, "t2f")
    registration = case_registration(model, volume, image, keep, "t2f")
    conditions = TASKS["inpainting"].inputs(image=image, mask=keep, insert=False)["conditions"]
    labels = backbone_of(model).class_labels("t2f")
    handed = model.prior(conditions, None, labels, **prior_options(registration))
    torch.testing.assert_close(handed, model.prior(conditions, None, labels), atol=1e-6, rtol=0)
    settings = dict(contrast="t2f", steps=2, progress=False, device="cpu")
    coarse, coarse_mask = _case(fine, 2.0)
    assert case_registration(model, coarse, *on_model_grid(coarse, coarse_mask > 0, model, "t2f")[1:], "t2f") is None
    on_model_grid_too = [inpaint(coarse, coarse.with_array(coarse_mask), model=str(folder), **settings)
                         .outputs["inpainted"].array for folder in (fine, plain)]
    np.testing.assert_array_equal(*on_model_grid_too)
    lesion = [inpaint(volume, volume.with_array(mask), model=str(folder), mode="lesion", **settings)
              .outputs["inpainted"].array for folder in (fine, plain)]
    np.testing.assert_array_equal(*lesion)


def test_a_case_stored_lps_gets_the_same_detail_as_the_same_case_stored_ras(fine_module):
    """BraTS stores LPS: the detail goes through the affines, so the same anatomy stored with two axes reversed is
    filled the same, voxel for voxel once flipped back."""
    fine, _ = fine_module
    model = load_model("inpainting", str(fine), device="cpu")
    volume, mask = _case(fine, 1.0)
    n = volume.shape[0]
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:2, 3] = n - 1                                       # voxel (n-1-i, n-1-j, k) is RAS voxel (i, j, k)
    lps = Volume(np.ascontiguousarray(volume.array[::-1, ::-1]), lps_affine, name="case-t2f")
    ras_fill = prior_fill(volume, mask > 0, model, "t2f")
    lps_fill = prior_fill(lps, np.ascontiguousarray(mask[::-1, ::-1]) > 0, model, "t2f")
    np.testing.assert_allclose(lps_fill[::-1, ::-1], ras_fill, atol=1e-3 * np.ptp(ras_fill))
