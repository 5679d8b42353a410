import os

# Triton reads this when it is imported, which may happen early (torch can import it): set before anything else, so
# the kernel tests run Triton's interpreter on the CPU whatever was imported first.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from volgen.io.contrasts import MRI_CONTRASTS
from volgen.phantom import PhantomSpec, generate_case, write_case
from volgen.phantom.pet import PetSpec
from volgen.taskspec import TASKS


@pytest.fixture(scope="session")
def phantom_case():
    """One 2 mm tumour case with noiseless, blur-free 2TCM PET (generated once per test session)."""
    return generate_case(seed=7, index=0, spec=PhantomSpec(pet=PetSpec(dose=None, psf_fwhm_mm=0.0)))


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory, phantom_case):
    root = tmp_path_factory.mktemp("phantoms")
    return write_case(phantom_case, root)


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
    for job in ("synthesis", "super_resolution", "inpainting", "lesion"):
        conditions = TASKS[job].conditions(MRI_CONTRASTS)
        module = VCM(backbone, VCMConfig(conditions=conditions, channels=(8, 16), encoder_channels=(8,), features=8,
                                         head_channels=8, num_head_channels=8, norm_num_groups=8))
        torch.nn.init.normal_(module.beta.weight, std=0.1)
        hub.save_pretrained(module, root / job)
        folders[job] = root / job
    return folders


