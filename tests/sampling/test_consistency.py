"""Data-consistency projections: hand-checked values, idempotence, and exactness through the Haar codec."""
import torch

from volgen.codecs import HaarCodec
from volgen.sampling.consistency import ImageSpaceProjection
from volgen.ops import known_voxel_projection, repeat_slices, thick_slice_projection, thick_slices


def test_thick_slices_by_hand():
    x = torch.arange(8.0).view(1, 1, 1, 1, 8)
    assert thick_slices(x, 4, 4).flatten().tolist() == [1.5, 5.5]
    assert repeat_slices(torch.tensor([1.0, 2.0]).view(1, 1, 1, 1, 2), 2, 4).flatten().tolist() == [1, 1, 2, 2]


def test_thick_slice_projection_reproduces_the_data_and_is_idempotent():
    gen = torch.Generator().manual_seed(0)
    truth, guess = torch.rand(1, 1, 8, 8, 16, generator=gen), torch.rand(1, 1, 8, 8, 16, generator=gen)
    observed = thick_slices(truth, 4, 4)
    project = thick_slice_projection(observed, 4, 4)
    once = project(guess)
    assert torch.allclose(thick_slices(once, 4, 4), observed, atol=1e-6)
    assert torch.allclose(project(once), once, atol=1e-6)
    # Orthogonal: the correction is the smallest one, so it is orthogonal to every in-block detail.
    detail = guess - repeat_slices(thick_slices(guess, 4, 4), 4, 4)
    assert abs(float(((once - guess) * detail).sum())) < 1e-5


def test_known_voxels_survive_the_round_trip_through_haar():
    gen = torch.Generator().manual_seed(1)
    known, estimate = torch.rand(1, 1, 8, 8, 8, generator=gen), torch.rand(1, 1, 8, 8, 8, generator=gen)
    mask = torch.zeros_like(known)
    mask[..., 2:5, 3:6, 1:4] = 1
    codec = HaarCodec()
    projection = ImageSpaceProjection(codec, known_voxel_projection(known, mask))
    image = codec.decode(projection(codec.encode(estimate), 500))
    assert torch.allclose(image * (1 - mask), known * (1 - mask), atol=1e-6)
    assert torch.allclose(image * mask, estimate * mask, atol=1e-6)


def test_sampler_noise_is_drawn_with_or_without_a_generator():
    """A seeded generator gives its own stream; none gives torch's default one (the samplers' default)."""
    import torch

    from volgen.sampling.loop import gaussian_like

    x = torch.zeros(2, 3)
    assert torch.equal(gaussian_like(x, torch.Generator().manual_seed(1)),
                       torch.randn(2, 3, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(2)
    drawn = gaussian_like(x, None)
    torch.manual_seed(2)
    assert torch.equal(drawn, torch.randn(2, 3))
