"""Data parallelism across processes, through Hugging Face accelerate.

Every process holds a full replica of the model and takes its own contiguous slice of the
rows of every forget and retain batch. Gradients are combined with accelerate's all-reduce,
each process's gradient weighted by the number of terms its loss averages over, so N
processes take exactly the step one process takes on the whole batch (up to float summation
order). CIR's statistics (token counts, sums, sums of outer products) are summed the same
way before the subspaces are computed, so every process collapses the same subspaces.

A single process (no launcher) never initialises anything here: every function is then the
identity. Launch several with `torchrun --nproc_per_node N -m cir.cli ...` (CPU: gloo;
GPU: nccl, one device per process); `accelerate launch` works the same where it starts N
ranks (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache

import torch


def launched() -> bool:
    """True when a launcher started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def state():
    """accelerate's process state (creates the process group on first use)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    return state().num_processes if launched() else 1


def rank() -> int:
    return state().process_index if launched() else 0


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    """The device of this process: its GPU under a launcher, else the first GPU or the CPU."""
    if launched():
        return state().device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def main_first():
    """Let the main process run the block first (it may fill a cache the others then read)."""
    if not launched():
        yield
        return
    with state().main_process_first():
        yield


def barrier() -> None:
    if launched():
        state().wait_for_everyone()


def sum_(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor across processes, in place."""
    if not launched():
        return
    from accelerate.utils import reduce

    for tensor in tensors:
        tensor.copy_(reduce(tensor, reduction="sum"))


def sum_scalar(value: float) -> float:
    if not launched():
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device())
    sum_([tensor])
    return float(tensor)


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` (any shape) over all processes' elements together (a constant:
    no gradient flows through it)."""
    if not launched():
        return values.detach().mean()
    totals = torch.stack([values.detach().double().sum(), torch.tensor(values.numel(), dtype=torch.float64,
                                                                        device=values.device)])
    sum_([totals])
    return (totals[0] / totals[1]).to(values.dtype)


def share(count: float) -> float:
    """This process's share of the terms of a loss averaged over all processes' terms."""
    if not launched():
        return 1.0
    return count / max(sum_scalar(count), 1e-12)


def weighted_sum(grads: dict[str, torch.Tensor], weight: float = 1.0) -> dict[str, torch.Tensor]:
    """sum over processes of weight_p * grads_p, per name (summed in float32). With `weight` a
    process's `share` of a mean's terms, this turns the gradients of the shards' means into the
    gradient of the whole batch's mean."""
    if not launched():
        return grads
    out = {}
    for name, g in grads.items():  # one tensor at a time: no buffer the size of all gradients
        total = g.detach().float() * weight
        sum_([total])
        out[name] = total.to(g.dtype)
    return out


def shard_rows(n_rows: int, allow_empty: bool = False) -> slice:
    """This process's contiguous slice of `n_rows` rows (the first processes take one more
    when the rows do not divide evenly)."""
    size, index = world_size(), rank()
    if n_rows < size and not allow_empty:
        from cir.errors import InputError

        raise InputError(f"a batch of {n_rows} rows cannot be split across {size} processes: "
                         "use fewer processes or larger batches")
    base, extra = divmod(n_rows, size)
    start = index * base + min(index, extra)
    return slice(start, start + base + (1 if index < extra else 0))


def broadcast(obj):
    """The main process's `obj` on every process."""
    if not launched():
        return obj
    from accelerate.utils import broadcast_object_list

    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


def gather_values(value: float) -> list[float]:
    """[value of process 0, value of process 1, ...]."""
    if not launched():
        return [value]
    from accelerate.utils import gather_object

    return [float(v) for v in gather_object([value])]


def peak_memory_mb() -> float:
    """Peak memory of this process: allocated GPU memory on a GPU, else the peak resident set."""
    if torch.cuda.is_available() and device().type == "cuda":
        return torch.cuda.max_memory_allocated(device()) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
