"""A batch of cases, split across the processes of `torchrun` or `accelerate launch` when there are several.

Process r of n takes cases r, r + n, r + 2n, ... (each process loads its model once: the model cache is per
process), a failing case is reported and skipped, and the outcomes are gathered so that one summary is printed
(by process 0). Outputs do not depend on the split: every case is sampled with the same seed wherever it runs.
Under a launcher, `--device auto` gives process r its own GPU (LOCAL_RANK) when there are GPUs.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import torch.distributed as dist
from tqdm.auto import tqdm

from volgen.errors import VolgenError


@dataclass
class Outcome:
    name: str
    error: str | None = None


def world() -> tuple[int, int]:
    """(rank, number of processes) as torchrun and accelerate set them; (0, 1) alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _gather(outcomes: list[Outcome]) -> list[Outcome]:
    if not dist.is_initialized():
        dist.init_process_group("gloo")          # objects travel on the CPU, whatever the jobs ran on
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, [(o.name, o.error) for o in outcomes])
    dist.barrier()
    return [Outcome(name, error) for part in parts for name, error in part]


def run_batch(items: Sequence, name_of: Callable, work: Callable, *, progress: bool = True) -> list[Outcome]:
    """work(item) for this process's share of `items`; every process's outcomes, in the items' order."""
    rank, size = world()
    mine = list(items)[rank::size]
    outcomes = []
    bar = tqdm(mine, desc="cases" if size == 1 else f"cases (process {rank})", unit="case",
               disable=not progress, position=rank)
    for item in bar:
        name = name_of(item)
        bar.set_postfix_str(name)
        try:
            work(item)
            outcomes.append(Outcome(name))
        except Exception as exc:  # one bad case never stops the batch
            message = str(exc) if isinstance(exc, VolgenError) else f"{type(exc).__name__}: {exc}"
            outcomes.append(Outcome(name, message))
            tqdm.write(f"volgen: error: {name}: {message}", file=sys.stderr)
    bar.close()
    if size > 1:
        outcomes = _gather(outcomes)
    order = {name_of(item): i for i, item in enumerate(items)}
    return sorted(outcomes, key=lambda o: order.get(o.name, len(order)))


def summary(outcomes: list[Outcome], verb: str, out) -> int:
    """One line for the whole batch (from process 0 only); the exit status: 1 if any case failed."""
    failed = [o for o in outcomes if o.error is not None]
    if world()[0] == 0:
        done = len(outcomes) - len(failed)
        print(f"{done} of {len(outcomes)} cases {verb} into {out}" +
              (f"; {len(failed)} failed: " + ", ".join(o.name for o in failed) if failed else ""))
    return 1 if failed else 0
