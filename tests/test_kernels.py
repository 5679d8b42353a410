"""Every Triton kernel against its eager reference, run by Triton's interpreter on the CPU (fp32 and fp16, sizes
that are not multiples of the block), and the dispatch: eager on CPU tensors unless forced, forced modes honoured."""
import os

os.environ["TRITON_INTERPRET"] = "1"        # read when a kernel is first compiled

import pytest  # noqa: E402
import torch  # noqa: E402

from volgen import kernels  # noqa: E402
from volgen.kernels.groupnorm import group_norm, group_norm_eager  # noqa: E402
from volgen.kernels.haar import (haar_dwt3, haar_dwt3_eager, haar_idwt3, haar_idwt3_eager, haar_keep_known,  # noqa: E402
                                 haar_keep_known_eager, haar_keep_thick_slices, haar_keep_thick_slices_eager)
from volgen.kernels.patlak import patlak_proximal, patlak_proximal_eager  # noqa: E402
from volgen.kernels.sampler import (ddim_step, mean_spread, mean_spread_eager, ode_step, x0_eps,  # noqa: E402
                                    x0_eps_eager)

pytestmark = pytest.mark.skipif(not kernels.triton_available(), reason="Triton is not installed")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3)}


@pytest.fixture
def triton_forced(monkeypatch):
    monkeypatch.setenv("VOLGEN_KERNELS", "triton")


def _rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("lowpass", [1.0, 2.0 * 2 ** 0.5])
def test_haar_kernels_match_the_reference(triton_forced, dtype, lowpass):
    x = _rand(2, 3, 10, 6, 14, dtype=dtype)                    # 2*3*5*3*7 = 630 lanes: not a block multiple
    z = haar_dwt3(x, lowpass)
    torch.testing.assert_close(z, haar_dwt3_eager(x.float(), lowpass).to(dtype), **TOL[dtype])
    torch.testing.assert_close(haar_idwt3(z, lowpass), haar_idwt3_eager(z.float(), lowpass).to(dtype), **TOL[dtype])
    torch.testing.assert_close(haar_idwt3(z, lowpass), x, **TOL[dtype])                 # and it inverts
    channels_last = x.to(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(haar_dwt3(channels_last, lowpass), z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("known_batch", [1, 3, 6])
def test_keep_known_kernel_matches_decode_blend_encode(triton_forced, dtype, known_batch):
    """One known image for every item, one per item, or a group of 3 tiled over 2 samples."""
    from volgen.codecs.haar import HaarCodec
    from volgen.sampling.consistency import ImageSpaceProjection
    from volgen.ops import known_voxel_projection, tiled
    z = _rand(6, 16, 3, 5, 7, dtype=dtype)                                # 2 channels, blocks not a block multiple
    known = _rand(known_batch, 2, 6, 10, 14, dtype=dtype, seed=1)
    mask = (_rand(1, 2, 6, 10, 14, seed=2) > 0).to(dtype)
    codec = HaarCodec()
    got = ImageSpaceProjection(codec, known_voxel_projection(known, mask))(z, 500)     # the sampler's path
    want = haar_keep_known_eager(z.float(), known.float(), mask.float(), codec.lowpass_scale)
    torch.testing.assert_close(got.float(), want, **TOL[dtype])
    kept = haar_idwt3_eager(got.float(), codec.lowpass_scale)
    torch.testing.assert_close(kept * (1 - mask.float()), tiled(known.float() * (1 - mask.float()), len(kept)),
                               **TOL[dtype])                              # the known voxels come back exactly


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("axis, factor, observed_batch", [(0, 2, 1), (1, 4, 3), (2, 4, 1), (2, 6, 3)])
def test_keep_thick_slices_kernel_matches_decode_project_encode(triton_forced, dtype, axis, factor, observed_batch):
    from volgen.codecs.haar import HaarCodec
    from volgen.sampling.consistency import ImageSpaceProjection
    from volgen.ops import thick_slice_projection, thick_slices
    z = _rand(3, 16, 6, 6, 6, dtype=dtype)                      # 2 channels; 12^3 images divide by 2, 4 and 6
    observed = thick_slices(_rand(observed_batch, 2, 12, 12, 12, dtype=dtype, seed=1), factor, 2 + axis)
    codec = HaarCodec()
    got = ImageSpaceProjection(codec, thick_slice_projection(observed, factor, 2 + axis))(z, 500)   # the sampler's
    want = haar_keep_thick_slices_eager(z.float(), observed.float(), factor, axis, codec.lowpass_scale)
    torch.testing.assert_close(got.float(), want, **TOL[dtype])
    image = haar_idwt3_eager(got.float(), codec.lowpass_scale)             # the data are reproduced exactly
    torch.testing.assert_close(thick_slices(image, factor, 2 + axis), observed.float().expand(3, -1, -1, -1, -1),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ddim_kernel_matches_the_reference(triton_forced, dtype):
    x, x0 = _rand(3, 8, 5, 7, 9, dtype=dtype), _rand(3, 8, 5, 7, 9, dtype=dtype, seed=1)
    for a, s, a_n, s_n in ((0.7, 0.71, 0.9, 0.43), (0.95, 0.3, 1.0, 0.0)):     # a middle step, and the last one
        reference = a_n * x0.float() + s_n * (x.float() - a * x0.float()) / s     # DDIM's own form
        torch.testing.assert_close(ddim_step(x, x0, a, s, a_n, s_n), reference.to(dtype), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("with_previous", [False, True])
def test_ode_step_kernel_matches_the_reference(triton_forced, dtype, with_previous):
    x, x0, prev = (_rand(2, 8, 5, 7, 9, dtype=dtype, seed=k) for k in range(3))
    prev = prev if with_previous else None
    got = ode_step(x, x0, 0.8, 0.3, prev, -0.2)
    reference = 0.8 * x.float() + 0.3 * x0.float() + (-0.2 * prev.float() if with_previous else 0)
    torch.testing.assert_close(got, reference.to(dtype), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("parameterization", ["eps", "x0", "v", "flow"])
@pytest.mark.parametrize("guided", [False, True])
def test_x0_eps_kernel_matches_the_reference(triton_forced, dtype, parameterization, guided):
    from volgen.backbones.denoiser import x0_eps_coefficients
    x = _rand(3, 8, 5, 7, 9)                                              # the sampler's state stays float32
    prediction, uncond = _rand(3, 8, 5, 7, 9, dtype=dtype, seed=1), _rand(3, 8, 5, 7, 9, dtype=dtype, seed=2)
    alpha, sigma = (0.6, 0.4) if parameterization == "flow" else (0.8, 0.6)
    coefficients = x0_eps_coefficients(alpha, sigma, parameterization)
    extra = (uncond, 3.0) if guided else ()
    got = x0_eps(x, prediction, coefficients, *extra)
    want = x0_eps_eager(x, prediction.float(), coefficients, *(e.float() if torch.is_tensor(e) else e for e in extra))
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_mean_spread_kernel_matches_torch(triton_forced, dtype):
    draws = (_rand(4, 2, 1, 5, 6, 7, seed=3) * 0.1 + 100.0).to(dtype)   # a large offset: no catastrophic cancelling
    mean, std = mean_spread(draws)
    want_mean, want_std = draws.float().mean(0), draws.float().std(0, correction=0)
    tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=2e-3, atol=0.1)
    torch.testing.assert_close(mean.float(), want_mean, **tol)
    torch.testing.assert_close(std.float(), want_std, rtol=1e-2, atol=1e-3 if dtype == torch.float32 else 0.05)
    assert mean_spread_eager(draws.float())[1].shape == std.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_patlak_kernel_matches_the_reference(triton_forced, dtype):
    grid = (5, 6, 7)
    ki0, v0 = _rand(2, *grid, dtype=dtype).abs(), _rand(2, *grid, dtype=dtype, seed=1).abs()
    c0, c1 = _rand(*grid, dtype=dtype, seed=2), _rand(*grid, dtype=dtype, seed=3)
    h00, h11 = _rand(*grid, dtype=dtype, seed=4).abs() + 2.0, _rand(*grid, dtype=dtype, seed=5).abs() + 1.0
    h01 = 0.5 * _rand(*grid, dtype=dtype, seed=6)            # each voxel its own precision (own frame times)
    data = (c0, c1, h00, h01, h11)
    got = patlak_proximal(ki0, v0, *data, 3.0, 0.5)
    want = patlak_proximal_eager(ki0.float(), v0.float(), *(d.float() for d in data), 3.0, 0.5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[torch.float32 if dtype == torch.float32 else torch.float16])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("affine, silu", [(True, True), (True, False), (False, False)])
def test_group_norm_kernel_matches_torch(triton_forced, dtype, layout, affine, silu):
    x = (_rand(2, 8, 5, 6, 7, seed=5) * 3 + 1).to(dtype)       # 2 x 4 groups of 2 x 210: not block multiples
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last_3d)
    weight, bias = (_rand(8, seed=6).to(dtype), _rand(8, seed=7).to(dtype)) if affine else (None, None)
    got = group_norm(x, 4, weight, bias, 1e-5, silu=silu)
    want = group_norm_eager(x.float(), 4, None if weight is None else weight.float(),
                            None if bias is None else bias.float(), 1e-5, silu=silu)
    torch.testing.assert_close(got.float(), want, **TOL[dtype])
    layout_kept = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    assert got.dtype == dtype and got.is_contiguous(memory_format=layout_kept)


def _tiny_unet():
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=3, in_channels=2, out_channels=2, channels=(8, 16),
                             attention_levels=(False, False), num_res_blocks=1, norm_num_groups=4,
                             num_head_channels=8)
    for p in net.parameters():           # MONAI zero-initialises some layers: make every path count
        torch.nn.init.normal_(p, std=0.2)
    return net.eval()


@pytest.mark.parametrize("mode", ["eager", "triton"])
def test_swapping_in_the_fused_modules_keeps_outputs_and_state_dicts(monkeypatch, mode):
    from volgen.kernels.swap import FusedGroupNorm, FusedResnetBlock, use_fused_kernels

    monkeypatch.setenv("VOLGEN_KERNELS", mode)
    net = _tiny_unet()
    x, t = _rand(2, 2, 8, 8, 8, seed=8), torch.tensor([10, 500])
    with torch.no_grad():
        before = net(x, t)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    use_fused_kernels(net)
    assert any(isinstance(m, FusedResnetBlock) for m in net.modules())
    assert not any(type(m) is torch.nn.GroupNorm for m in net.modules())
    assert any(isinstance(m, FusedGroupNorm) and m.silu for m in net.modules())        # the output's norm + SiLU
    assert net.state_dict().keys() == state.keys()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        after = net(x, t)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    if mode == "eager":
        assert torch.equal(after, before)                        # the very same arithmetic on the CPU


def test_forced_triton_really_runs_the_kernels(triton_forced, monkeypatch):
    import volgen.kernels.groupnorm
    import volgen.kernels.haar
    import volgen.kernels.patlak
    import volgen.kernels.sampler

    def boom(*args, **kwargs):
        raise AssertionError("the eager reference ran")

    for module, name in ((volgen.kernels.haar, "haar_dwt3_eager"), (volgen.kernels.haar, "haar_idwt3_eager"),
                         (volgen.kernels.haar, "haar_keep_known_eager"),
                         (volgen.kernels.haar, "haar_keep_thick_slices_eager"),
                         (volgen.kernels.sampler, "ode_step_eager"), (volgen.kernels.sampler, "x0_eps_eager"),
                         (volgen.kernels.sampler, "mean_spread_eager"),
                         (volgen.kernels.patlak, "patlak_proximal_eager"),
                         (volgen.kernels.groupnorm, "group_norm_eager")):
        monkeypatch.setattr(module, name, boom)
    x = _rand(1, 1, 4, 4, 4)
    haar_idwt3(haar_dwt3(x))
    haar_keep_known(haar_dwt3(x.expand(1, 1, 4, 4, 4)).expand(1, 8, 2, 2, 2), x, x)
    haar_keep_thick_slices(haar_dwt3(x), x[..., :2], 2, 2)
    ddim_step(x, x, 0.5, 0.5, 1.0, 0.0)
    ode_step(x, x, 1.0, 0.5, x, 0.5)
    x0_eps(x, x, (0.0, 1.0, 2.0, -1.0), x, 2.0)
    mean_spread(x.expand(3, 1, 4, 4, 4))
    patlak_proximal(x[0], x[0], x[0, 0], x[0, 0], x[0, 0].abs() + 1, x[0, 0] * 0, x[0, 0].abs() + 1, 1.0, 1.0)
    group_norm(x.expand(1, 4, 4, 4, 4), 2, silu=True)


def test_the_dispatch(monkeypatch):
    x = torch.zeros(2)
    monkeypatch.delenv("VOLGEN_KERNELS", raising=False)
    assert kernels.backend(x) == "eager"                       # CPU tensors: eager unless forced
    monkeypatch.setenv("VOLGEN_KERNELS", "triton")
    assert kernels.backend(x) == "triton"
    monkeypatch.setenv("VOLGEN_KERNELS", "eager")
    assert kernels.backend(x) == "eager"
    monkeypatch.setenv("VOLGEN_KERNELS", "fast")
    with pytest.raises(ValueError, match="VOLGEN_KERNELS must be one of"):
        kernels.backend(x)


def test_anything_autograd_differentiates_stays_eager(monkeypatch):
    monkeypatch.setenv("VOLGEN_KERNELS", "triton")
    weight = torch.ones(4, requires_grad=True)
    assert kernels.backend(torch.zeros(2), weight) == "eager"
    with torch.no_grad():
        assert kernels.backend(torch.zeros(2), weight) == "triton"


def test_the_fallback_when_triton_is_missing(monkeypatch):
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    monkeypatch.delenv("VOLGEN_KERNELS", raising=False)
    assert kernels.backend(torch.zeros(1)) == "eager"
    x = _rand(1, 1, 4, 4, 4)
    torch.testing.assert_close(haar_dwt3(x), haar_dwt3_eager(x))          # silently the reference
    monkeypatch.setenv("VOLGEN_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="Triton does not import"):
        kernels.backend(x)
