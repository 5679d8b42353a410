import nibabel as nib
import numpy as np
import pytest

from volgen.phantom import PhantomSpec, generate_case, write_case
from volgen.phantom.pet import PetSpec


@pytest.fixture(scope="session")
def phantom_case():
    """One 2 mm tumour case with noiseless PET (generated once per test session)."""
    return generate_case(seed=7, index=0, spec=PhantomSpec(pet=PetSpec(dose=None)))


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
