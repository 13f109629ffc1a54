"""Running under ``torchrun``: process group, sample sharding, gradient averaging.

invrim uses torch's own distributed engine. Under ``torchrun`` (``WORLD_SIZE > 1`` in the
environment) :func:`init_if_needed` joins the process group (``nccl`` when CUDA is available,
``gloo`` otherwise); a script may also initialise it itself beforehand. Every global batch is the
same as in a single-process run and is split across ranks; gradients are averaged over the whole
global batch with one all-reduce per step (the flattened gradients with the loss appended, which
every rank needs for logging and the non-finite check), so the training curve matches a single
process with the same global batch size.

A RIM calls its backbone ``T`` times per step, which DistributedDataParallel's module wrapper does
not support without a static graph; averaging the flattened gradients directly is what its
reducer does, in one collective, with no wrapper.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_if_needed() -> bool:
    """Join the process group when launched by torchrun; True when running distributed."""
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(device: Any = None) -> Any:
    """``cuda`` means this rank's GPU (``LOCAL_RANK``) when distributed."""
    if active() and device is not None and str(device) == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _comm_device() -> torch.device:
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity when not distributed)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], Any], error: type[Exception]) -> Any:
    """Run ``fn`` on rank 0 only and return its result there (``None`` elsewhere).

    If it fails, every rank raises: rank 0 its own exception, the others ``error(message)``, so no
    rank is left waiting in a collective that the failed one never joins. Not distributed: ``fn()``.
    """
    result, failure = None, None
    if is_main():
        try:
            result = fn()
        except BaseException as e:
            failure = e
    message = broadcast_object(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    if message is not None:
        raise error(message)
    return result


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks of a few numbers (float64)."""
    if not active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not active():
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


def average_gradients(parameters: Sequence[torch.nn.Parameter], local_count: int, global_count: int,
                      extra: Sequence[float] = ()) -> list[float]:
    """Turn each rank's gradient of its local mean loss into the gradient of the global mean,
    ``Σ_r n_r g_r / Σ_r n_r``, with one all-reduce of the flattened gradients; ``extra`` numbers
    ride along in the same collective and come back summed over the ranks."""
    if not active():
        return list(extra)
    params = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]) * (local_count / global_count)
    if extra:
        flat = torch.cat([flat, torch.tensor(list(extra), dtype=flat.dtype, device=flat.device)])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = torch.empty_like(p).copy_(flat[offset:offset + n].view(p.shape))   # p's memory layout
        offset += n
    return flat[offset:].tolist()


@dataclass
class Step:
    """One global batch as seen by this rank."""

    indices: list[int]          # what to load (never empty: a placeholder when local_count is 0)
    local_count: int            # how many of ``indices`` count
    global_count: int


def shard_batches(order: Sequence[int], batch_size: int, rank_: int, world: int) -> list[Step]:
    """Split each global batch of ``order`` (consecutive runs of ``batch_size``) across ranks."""
    steps = []
    for lo in range(0, len(order), batch_size):
        batch = list(order[lo:lo + batch_size])
        m = len(batch)
        base, extra = divmod(m, world)
        start = rank_ * base + min(rank_, extra)
        count = base + (1 if rank_ < extra else 0)
        local = batch[start:start + count]
        steps.append(Step(local if local else batch[:1], count, m))
    return steps


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler over precomputed :class:`Step` s (for a DataLoader's ``batch_sampler``)."""

    def __init__(self, steps: list[Step]):
        self.steps = steps

    def __iter__(self) -> Iterator[list[int]]:
        return iter([s.indices for s in self.steps])

    def __len__(self) -> int:
        return len(self.steps)


def epoch_order(n: int, shuffle: bool, seed: Optional[int]) -> list[int]:
    """The sample order of an epoch, identical to single-process training's RandomSampler."""
    if not shuffle:
        return list(range(n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def shutdown(wait: bool = True) -> None:
    """Leave the process group at the end of a command so the process exits cleanly; ``wait``
    for the other ranks first (not after an error: they may never arrive)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            try:
                dist.barrier()
            except Exception:
                pass
        dist.destroy_process_group()
