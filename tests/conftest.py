import os

# Triton reads this when it is imported, which may happen early (torch can import it): set before anything else, so
# the kernel tests run Triton's interpreter on the CPU whatever was imported first.
os.environ.setdefault("TRITON_INTERPRET", "1")

import nibabel as nib
import numpy as np
import pytest

from volgen.io.contrasts import MRI_CONTRASTS
from volgen.phantom import PhantomSpec, generate_case, write_case
from volgen.taskspec import TASKS
from volgen.phantom.pet import PetSpec


@pytest.fixture(scope="session")
def phantom_case():
    """One 2 mm tumour case with noiseless, blur-free 2TCM PET (generated once per test session)."""
    return generate_case(seed=7, index=0, spec=PhantomSpec(pet=PetSpec(dose=None, psf_fwhm_mm=0.0)))


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory, phantom_case):
    root = tmp_path_factory.mktemp("phantoms")
    return write_case(phantom_case, root)


def save_nifti(path, array, affine=None, dtype=None):
    """Write a test image with nibabel directly (an independent writer)."""
    img = nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    nib.save(img, str(path))
    return path


def smooth_volume(shape=(20, 24, 16), seed=0):
    """A smooth positive test volume with a zero background border."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.random(shape), 2.0)
    vol = (vol - vol.min()) / np.ptp(vol) * 900 + 100
    vol[:2] = 0
    vol[:, -2:] = 0
    return vol.astype(np.float32)




@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny Haar backbone and one tiny VCM per job, saved as model folders: {job: folder}. Their heads are
    random (not zero) so the modules really act; nothing is trained, the job plumbing is what is tested."""
    import torch

    from volgen import hub
    from volgen.backbones import Backbone, BackboneConfig, UNetConfig
    from volgen.modules import VCM, VCMConfig

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = UNetConfig(in_channels=8, out_channels=8, channels=(8, 16), attention_levels=(False, False),
                     num_head_channels=8, norm_num_groups=8, num_class_embeds=4)
    backbone = Backbone(BackboneConfig(network=net.to_dict(), contrasts=MRI_CONTRASTS))
    torch.nn.init.normal_(backbone.network.unet.out[2].conv.weight, std=0.05)
    hub.save_pretrained(backbone, root / "backbone")
    backbone = hub.from_pretrained(root / "backbone")
    folders = {"backbone": root / "backbone"}
    for job in ("synthesis", "super_resolution", "inpainting"):
        conditions = TASKS[job].conditions(MRI_CONTRASTS)
        module = VCM(backbone, VCMConfig(conditions=conditions, channels=(8, 16), encoder_channels=(8,), features=8,
                                         head_channels=8, num_head_channels=8, norm_num_groups=8))
        torch.nn.init.normal_(module.beta.weight, std=0.1)
        hub.save_pretrained(module, root / job)
        folders[job] = root / job
    return folders


def write_brats_case(root, name, shape=(32, 36, 28), affine=None, contrasts=("t1n", "t1c", "t2w", "t2f"),
                     dtype=np.int16, seed=0):
    """A BraTS-layout case folder of smooth volumes: root/name/name-<contrast>.nii.gz (and a seg)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    for i, contrast in enumerate(contrasts):
        save_nifti(folder / f"{name}-{contrast}.nii.gz", smooth_volume(shape, seed=seed + i).astype(dtype), affine)
    seg = np.zeros(shape, np.uint8)
    seg[tuple(slice(n // 3, n // 3 + max(2, n // 6)) for n in shape)] = 1
    save_nifti(folder / f"{name}-seg.nii.gz", seg, affine)
    return folder
