"""Sampling speed: volgen's DDIM against MONAI's DiffusionInferer + DDIMScheduler and a diffusers DDIMScheduler loop,
around the same fixed network, on the 2 mm brain grid (image 1x96x112x96; wavelet grid 8x48x56x48).

Each (grid, method) runs in its own process so peak memory is its own (CUDA: max allocated; CPU: peak RSS).
The network is wrapped in a timer, so 'overhead' is the share of the sampling time spent outside the network.
Targets: volgen's time at most 1.0x either baseline; its overhead outside the network under 2%.

    python scripts/benchmarks/bench_sampling.py [--steps 50] [--image-steps N] [--device cuda]
On the CPU the image grid runs 10 steps by default (a forward pass takes seconds there); the ratios are per step.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

GRIDS = {"image": (1, 96, 112, 96), "wavelet": (8, 48, 56, 48)}
METHODS = ("volgen", "monai", "diffusers")
BETAS = dict(beta_start=0.0015, beta_end=0.0205)


class TimedNetwork(torch.nn.Module):
    """Adds up the wall time spent inside the wrapped network."""

    def __init__(self, network, device):
        super().__init__()
        self.network, self.device, self.seconds, self.calls = network, device, 0.0, 0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def forward(self, *args, **kwargs):
        self._sync()
        start = time.perf_counter()
        out = self.network(*args, **kwargs)
        self._sync()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def build_network(channels: int, device):
    from volgen.backbones import DiffusionUNet, UNetConfig
    torch.manual_seed(0)
    config = UNetConfig(in_channels=channels, out_channels=channels, channels=(16, 32, 32), norm_num_groups=8,
                        attention_levels=(False, False, False), num_res_blocks=1)
    return DiffusionUNet(config).to(device).eval()


def run_volgen(net, x, steps, device):
    from volgen.backbones import Denoiser
    from volgen.sampling import NoiseSchedule, sample_ddim
    timed = TimedNetwork(net, device)
    schedule = NoiseSchedule.scaled_linear(1000, **BETAS)
    sample_ddim(Denoiser(timed, schedule, "eps"), x, schedule.timesteps(steps))
    return timed


def run_monai(net, x, steps, device):
    from monai.inferers import DiffusionInferer
    from monai.networks.schedulers import DDIMScheduler
    timed = TimedNetwork(net.unet, device)
    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", clip_sample=False, **BETAS)
    scheduler.set_timesteps(steps)
    DiffusionInferer(scheduler).sample(x, timed, scheduler, verbose=False)
    return timed


def run_diffusers(net, x, steps, device):
    from diffusers import DDIMScheduler
    timed = TimedNetwork(net.unet, device)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=True, **BETAS)
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(timed(x, t.view(1).to(x.device)), t, x).prev_sample
    return timed


def worker(grid: str, method: str, steps: int, device_name: str) -> dict:
    device = torch.device(device_name)
    shape = GRIDS[grid]
    net = build_network(shape[0], device)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        net(x, torch.tensor([999], device=device))                     # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    timed = {"volgen": run_volgen, "monai": run_monai, "diffusers": run_diffusers}[method](net, x, steps, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    peak_mb = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"grid": grid, "method": method, "steps": steps, "calls": timed.calls, "seconds": total,
            "network_seconds": timed.seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--image-steps", type=int, default=None, help="steps on the image grid (CPU default 10)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--grids", default="image,wavelet")
    parser.add_argument("--worker", nargs=2, metavar=("GRID", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.device)))
        return
    cpu = args.device == "cpu"
    image_steps = args.image_steps or (10 if cpu else args.steps)
    print(f"device {args.device}; network DiffusionUNet channels (16, 32, 32), no attention; DDIM, scaled-linear")
    results = {}
    for grid in args.grids.split(","):
        steps = image_steps if grid == "image" else args.steps
        for method in METHODS:
            cmd = [sys.executable, __file__, "--worker", grid, method, "--steps", str(steps), "--device", args.device]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[grid, method] = json.loads(out)
    header = f"{'grid':8} {'method':10} {'steps':>5} {'s/step':>8} {'net s/step':>10} {'overhead':>9} {'peak MB':>8} " \
             f"{'vs monai':>9} {'vs diffusers':>12}"
    print(header)
    print("-" * len(header))
    for grid in args.grids.split(","):
        per_step = {m: results[grid, m]["seconds"] / results[grid, m]["steps"] for m in METHODS}
        for method in METHODS:
            r = results[grid, method]
            overhead = 1 - r["network_seconds"] / r["seconds"]
            print(f"{grid:8} {method:10} {r['steps']:>5} {per_step[method]:>8.3f} "
                  f"{r['network_seconds'] / r['steps']:>10.3f} {overhead:>8.2%} {r['peak_mb']:>8.0f} "
                  f"{per_step[method] / per_step['monai']:>8.3f}x {per_step[method] / per_step['diffusers']:>11.3f}x")
    for grid in args.grids.split(","):
        r = results[grid, "volgen"]
        per_step = {m: results[grid, m]["seconds"] / results[grid, m]["steps"] for m in METHODS}
        worst = max(per_step["volgen"] / per_step["monai"], per_step["volgen"] / per_step["diffusers"])
        overhead = 1 - r["network_seconds"] / r["seconds"]
        print(f"{grid}: volgen vs the faster baseline {worst:.3f}x (target <= 1.0: "
              f"{'met' if worst <= 1.0 else 'MISSED'}); overhead {overhead:.2%} (target < 2%: "
              f"{'met' if overhead < 0.02 else 'MISSED'})")


if __name__ == "__main__":
    main()
