"""The shared sampling path: conditions reach the module, projections hold exactly on the decoded image."""
import torch

from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.modules import VCM, VCMConfig
from volgen.sampling import FlowSchedule
from volgen.sampling.consistency import known_voxel_projection, thick_slice_projection, thick_slices
from volgen.tasks import default_sampler, generate


def _backbone(**kwargs) -> Backbone:
    torch.manual_seed(0)
    net = UNetConfig(in_channels=8, out_channels=8, channels=(8, 16), attention_levels=(False, False),
                     num_head_channels=8, norm_num_groups=8, num_class_embeds=2)
    backbone = Backbone(BackboneConfig(network=net.to_dict(), contrasts=("t1n", "t2f"), **kwargs))
    torch.nn.init.normal_(backbone.network.unet.out[2].conv.weight, std=0.05)
    return backbone.eval()


def test_projections_hold_on_the_output():
    backbone = _backbone()
    gen = torch.Generator().manual_seed(0)
    known = torch.rand(1, 1, 16, 16, 16, generator=gen) * 2 - 1
    mask = torch.zeros_like(known)
    mask[..., 4:9, 5:10, 6:12] = 1
    out = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3,
                   projection=known_voxel_projection(known, mask))
    assert torch.equal(out * (1 - mask), known * (1 - mask))
    observed = thick_slices(known, 4, 4)
    out = generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=3,
                   projection=thick_slice_projection(observed, 4, 4))
    assert torch.allclose(thick_slices(out, 4, 4), observed, atol=1e-5)


def test_a_module_and_its_conditions_change_the_sample_and_seeds_repeat():
    backbone = _backbone()
    module = VCM(backbone, VCMConfig(conditions=("t1n", "t2f"), channels=(8, 16), encoder_channels=(8,), features=8,
                                     head_channels=8, num_head_channels=8, norm_num_groups=8)).eval()
    torch.nn.init.normal_(module.beta.weight, std=0.5)
    conditions = torch.rand(1, 2, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    present = torch.tensor([[1.0, 0.0]])
    a = generate(module, (1, 16, 16, 16), contrast="t2f", conditions=conditions, present=present, steps=3, seed=4)
    b = generate(module, (1, 16, 16, 16), contrast="t2f", conditions=conditions, present=present, steps=3, seed=4)
    plain = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3, seed=4)
    assert torch.equal(a, b)
    assert (a - plain).abs().max() > 1e-3


def test_flow_backbones_sample_with_euler_by_default():
    backbone = _backbone(schedule=FlowSchedule().config(), parameterization="flow")
    assert default_sampler(backbone) == "euler"
    assert torch.isfinite(generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=2)).all()
