"""Kernels and end-to-end sampling: fused (Triton) against eager, and against MONAI's own sampling loop.

    python scripts/benchmarks/bench_kernels.py [--repeat 5] [--skip-e2e]

Per kernel: achieved GB/s (bytes each must move once / time) against the copy bandwidth measured in the same run,
and kernel against eager time. End to end: the shipped synthesis module sampling a 2 mm case and a BraTS-size
1 mm case (240x240x155, on the model's 2 mm grid) at the device's default steps and samples, with the fused kernels,
forced eager, and MONAI's DiffusionInferer + DDIMScheduler loop around the same conditioned network; seconds and
peak memory. GPU targets: kernels >= 70% of copy bandwidth; sampling >= 1.3x faster than eager and >= 1.5x faster
than MONAI's loop; the BraTS-size case <= 5 s and <= 8 GB. On a CPU the kernel columns are empty (the dispatch runs
the eager references there) and only eager rows print.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time

import torch

from volgen import kernels
from volgen.kernels.groupnorm import group_norm, group_norm_eager
from volgen.kernels.haar import (haar_dwt3, haar_dwt3_eager, haar_idwt3, haar_idwt3_eager, haar_keep_known,
                                 haar_keep_known_eager, haar_keep_thick_slices, haar_keep_thick_slices_eager)
from volgen.kernels.patlak import patlak_proximal, patlak_proximal_eager
from volgen.kernels.sampler import mean_spread, mean_spread_eager, ode_step, ode_step_eager, x0_eps, x0_eps_eager

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeat: int) -> float:
    fn()                                              # compile / warm up
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


@contextlib.contextmanager
def kernel_mode(mode: str):
    saved = os.environ.get("VOLGEN_KERNELS")
    os.environ["VOLGEN_KERNELS"] = mode
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("VOLGEN_KERNELS")
        else:
            os.environ["VOLGEN_KERNELS"] = saved


def kernel_rows(repeat: int) -> None:
    shape = (2, 8, 48, 56, 48)                         # a 2 mm batch of 2 in Haar space (16 MB in float32)
    x = torch.randn(shape, device=DEVICE)
    image = torch.randn(2, 1, 96, 112, 96, device=DEVICE)
    n = x.numel() * 4
    copy = 2 * n / timed(lambda: x.clone(), repeat)
    s2 = x[0, 0].abs() + 1
    act = torch.randn(2, 32, 48, 56, 48, device=DEVICE)
    w, b = torch.ones(32, device=DEVICE), torch.zeros(32, device=DEVICE)
    mask = (torch.rand(1, 1, 96, 112, 96, device=DEVICE) > 0.5).float()
    observed = torch.randn(1, 1, 96, 112, 24, device=DEVICE)        # 4x thick slices of the image
    draws = torch.randn(8, 1, 96, 112, 96, device=DEVICE)          # 8 samples (the GPU default) of a 2 mm image
    coefficients = (0.0, 1.0, 1.6, -1.2)                              # x0-prediction at one noise level
    cases = {
        "haar dwt (encode)": (lambda: haar_dwt3(image, 2.83), lambda: haar_dwt3_eager(image, 2.83), 2 * n),
        "haar idwt (decode)": (lambda: haar_idwt3(x, 2.83), lambda: haar_idwt3_eager(x, 2.83), 2 * n),
        "ddim / euler update": (lambda: ode_step(x, x, 0.6, 0.4), lambda: ode_step_eager(x, x, 0.6, 0.4), 3 * n),
        "dpm-solver++(2m) update": (lambda: ode_step(x, x, 0.6, 0.5, x, -0.1),
                                    lambda: ode_step_eager(x, x, 0.6, 0.5, x, -0.1), 4 * n),
        "x0 / eps with guidance": (lambda: x0_eps(x, x, coefficients, x, 2.0),
                                   lambda: x0_eps_eager(x, x, coefficients, x, 2.0), 5 * n),
        "haar keep known (inpainting)": (lambda: haar_keep_known(x, image, mask, 2.83),
                                         lambda: haar_keep_known_eager(x, image, mask, 2.83), 2 * n + n // 2),
        "haar keep thick slices (4x SR)": (lambda: haar_keep_thick_slices(x, observed, 4, 2, 2.83),
                                           lambda: haar_keep_thick_slices_eager(x, observed, 4, 2, 2.83),
                                           2 * n + n // 4),
        "mean + spread of 8 samples": (lambda: mean_spread(draws), lambda: mean_spread_eager(draws),
                                       (8 + 2) * draws[0].numel() * 4),
        "patlak proximal": (lambda: patlak_proximal(x[0], x[0], s2, s2, s2, s2, s2, 1.0, 1.0),
                            lambda: patlak_proximal_eager(x[0], x[0], s2, s2, s2, s2, s2, 1.0, 1.0),
                            2 * n + 5 * n // 16),       # K maps in and out, 5 statistics
        "group norm + silu": (lambda: group_norm(act, 8, w, b, silu=True),
                              lambda: group_norm_eager(act, 8, w, b, silu=True), 3 * act.numel() * 4),
    }
    fused = kernels.backend(x) == "triton"
    print(f"device {DEVICE}; copy bandwidth {copy / 1e9:.1f} GB/s; kernels: {'triton' if fused else 'eager only'}")
    print("| kernel | eager ms | eager GB/s | kernel ms | kernel GB/s | % of copy | kernel / eager |\n"
          "|---|---|---|---|---|---|---|")
    for name, (kernel, eager, moved) in cases.items():
        with kernel_mode("eager"):
            t_eager = timed(eager, repeat)
        row = f"| {name} | {t_eager * 1e3:.2f} | {moved / t_eager / 1e9:.1f} |"
        if fused:
            t_kernel = timed(kernel, repeat)
            row += (f" {t_kernel * 1e3:.2f} | {moved / t_kernel / 1e9:.1f} | {100 * moved / t_kernel / copy:.0f}% |"
                    f" {t_kernel / t_eager:.2f} |")
        else:
            row += " | | | |"
        print(row)


def _peak_reset():
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak() -> str:
    if DEVICE.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GB (process RSS high-water)"


def monai_loop(model, shape, steps: int, samples: int, cond: dict):
    """MONAI's DiffusionInferer + DDIMScheduler around the same conditioned network (x0-prediction)."""
    from monai.inferers import DiffusionInferer
    from monai.networks.schedulers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", beta_start=1e-4, beta_end=0.02,
                              prediction_type="sample", clip_sample=False)
    scheduler.set_timesteps(steps)
    denoiser = model.denoiser()

    class Wrapped(torch.nn.Module):
        def forward(self, x, timesteps, context=None):
            return denoiser(x, timesteps.expand(len(x)), **cond)

    latent = model.backbone.codec.latent_shape((1, *shape))
    noise = torch.randn((samples, *latent), device=DEVICE)
    return DiffusionInferer(scheduler).sample(noise, Wrapped(), scheduler, verbose=False)


def e2e_rows(repeat: int) -> None:
    from volgen.tasks.generate import generate
    from volgen.tasks.models import default_samples, default_steps, default_timesteps, load_model

    model = load_model("synthesis", device=DEVICE)
    steps, samples = default_steps(DEVICE), default_samples(DEVICE)
    default = default_timesteps(model.backbone.denoiser.schedule, DEVICE, finished=False)
    print(f"\nend to end: volgen-vcm-synthesis-2mm, {samples} samples on {DEVICE}; the default timesteps "
          f"{[int(t) for t in default]}, and {steps} steps (MONAI's loop cannot stop early)")
    print("| case | model grid | path | seconds | peak memory |\n|---|---|---|---|---|")
    for case, shape in (("2 mm phantom", (96, 112, 96)), ("BraTS-size 1 mm (240x240x155)", (120, 128, 80))):
        conditions = torch.zeros(1, 4, *shape, device=DEVICE) - 1
        conditions[..., 10:-10, 10:-10, 10:-10] = 0.2
        present = torch.tensor([[1.0, 0.0, 1.0, 1.0]], device=DEVICE)
        kw = dict(contrast="t1c", conditions=conditions, present=present, samples=samples)
        modes = ("triton", "eager") if kernels.backend(conditions) == "triton" else ("eager",)
        # the defaults (timesteps; bf16 autocast where the device has it), then steps x fp32 like MONAI's loop
        runs = [(m, "auto", default) for m in modes] + [(m, "auto", steps) for m in modes] + [("eager", "fp32", steps)]
        for mode, precision, timesteps in runs:
            with kernel_mode(mode):
                _peak_reset()
                seconds = timed(lambda: generate(model, (1, *shape), precision=precision, steps=timesteps, **kw),
                                repeat)
                label = "default timesteps" if isinstance(timesteps, list) else f"{timesteps} steps"
                print(f"| {case} | {'x'.join(map(str, shape))} | volgen ({'fused' if mode == 'triton' else 'eager'}, "
                      f"{precision}, {label}) | {seconds:.2f} | {_peak()} |")
        cond = {"class_labels": model.backbone.class_labels("t1c", samples, device=DEVICE),
                "conditions": conditions.expand(samples, *conditions.shape[1:]),
                "present": present.expand(samples, -1)}
        _peak_reset()
        with torch.no_grad(), kernel_mode("eager"):
            seconds = timed(lambda: monai_loop(model, shape, steps, samples, cond), repeat)
        print(f"| {case} | {'x'.join(map(str, shape))} | MONAI DiffusionInferer loop (fp32, {steps} steps) | "
              f"{seconds:.2f} | "
              f"{_peak()} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    with torch.no_grad():
        kernel_rows(args.repeat)
    if not args.skip_e2e:
        e2e_rows(max(1, args.repeat // 5))


if __name__ == "__main__":
    main()
