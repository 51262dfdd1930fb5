"""Data parallelism across processes, through Hugging Face accelerate.

Every process holds a full replica of the model and takes its own contiguous slice of the
rows of every forget and retain batch. Gradients are combined with accelerate's all-reduce,
each process's gradient weighted by the number of terms its loss averages over, so N
processes take exactly the step one process takes on the whole batch (up to float summation
order). CIR's statistics (token counts, sums, sums of outer products) are summed the same
way before the subspaces are computed, so every process collapses the same subspaces.

With FSDP (`--fsdp`, or `accelerate launch --use_fsdp`), `shard_model` applies PyTorch's
FSDP2 `fully_shard` to every decoder layer and to the whole model, the wrapping accelerate's
FSDP2 plugin uses: each process then stores one slice (rows) of every weight, gathered per layer
for the forward and backward passes. Autograd gradients arrive already summed into each
process's slice (reduce-scatter; every process scales its loss by its share first); CIR's
updates, formed from the gathered activations and gradients, are summed as before and each
process keeps its slice (`local_part`).

A single process (no launcher) never initialises anything here: every function is then the
identity. Launch several with `torchrun --nproc_per_node N -m cir.cli ...` (CPU: gloo;
GPU: nccl, one device per process; with fewer GPUs than processes on a machine, every process
runs on the CPU with gloo, and the main process says so in one line); `accelerate launch` works the same where it starts N
ranks (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import lru_cache

import torch


def launched() -> bool:
    """True when a launcher started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def gpus_for_each_process() -> bool:
    """Whether this machine has a GPU for each process launched on it (nccl needs one per process)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return torch.cuda.is_available() and torch.cuda.device_count() >= local


def cpu_fallback_notice() -> str | None:
    """The line the main process prints when GPUs exist but fewer than the processes: they all
    run on the CPU (gloo) instead; None when nothing is said."""
    if gpus_for_each_process() or not torch.cuda.is_available():
        return None
    local = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    return (f"cir: {local} processes on this machine but {torch.cuda.device_count()} GPU(s), one per process "
            "needed: running every process on the CPU (gloo)")


@lru_cache(maxsize=1)
def state():
    """accelerate's process state (creates the process group on first use): one GPU per process
    (nccl) where the machine has as many as it runs processes, else every process on the CPU (gloo)."""
    from accelerate import PartialState

    notice = cpu_fallback_notice()
    if notice and int(os.environ.get("RANK", "0")) == 0:
        print(notice, file=sys.stderr)
    return PartialState(cpu=not gpus_for_each_process())


def shutdown() -> None:
    """End the process group, if one was started, once every process is done: left to the
    interpreter's exit, the group's threads can be torn down while still running, and a process
    then aborts ("terminate called without an active exception") after its work is finished."""
    if launched() and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


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


# ---------------------------------------------------------------- FSDP
def _require_launcher() -> None:
    if not launched():
        from cir.errors import InputError

        raise InputError("--fsdp needs several processes: start them with torchrun --nproc_per_node N "
                         "(or accelerate launch) -m cir.cli ...")


def fsdp_requested(flag: bool = False) -> bool:
    """FSDP asked for by `--fsdp` or by `accelerate launch --use_fsdp` (ACCELERATE_USE_FSDP);
    asking for it without a launcher is an input error."""
    requested = flag or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if requested:
        _require_launcher()
    return requested


def shard_model(model):
    """Shard `model` in place with FSDP2 across the launched processes: each decoder layer is one
    unit, the rest (embeddings, final norm, head) the root unit. Gradients are summed, not
    averaged, across processes (each process weights its loss by its share of the batch)."""
    _require_launcher()
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from cir.architecture import decoder_layers

    state()  # the process group
    mesh = init_device_mesh(device().type, (world_size(),))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    # the root resharded after forward too, so that between passes every parameter the
    # model lists is its sharded self (what optimisers and updates must hold)
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain sums: gloo has no pre-scaled ones
    with torch.no_grad():  # one whole forward pass makes the model the root of every unit (FSDP
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device()), use_cache=False)  # inits lazily)
    return model


@contextlib.contextmanager
def root_gathered(model):
    """Under FSDP, gather the root unit's parameters (embeddings, final norm, head) for a block
    that calls the model's body and head separately instead of the model itself."""
    if not is_sharded(model):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _is_dtensor(tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local_part(param: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """`full` (the same whole tensor on every process) laid out like `param`: this process's
    slice when `param` is sharded, else `full` itself."""
    if not _is_dtensor(param) or _is_dtensor(full):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)


def global_norm(tensors) -> torch.Tensor:
    """The L2 norm of all `tensors` together (float32); sharded tensors count every process's slice."""
    local = [t.to_local() if _is_dtensor(t) else t for t in tensors]
    squares = sum(((t.float() ** 2).sum() for t in local), torch.zeros((), device=local[0].device))
    if any(_is_dtensor(t) for t in tensors):  # mixed lists do not occur: a model is sharded or not
        sum_([squares])
    return squares.sqrt()


def full_state_dict(model) -> dict | None:
    """The whole model's weights on the main process (None elsewhere); every process must call
    it. None for a model that is not sharded (its own state dict is complete)."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and head.weight is embeddings.weight:  # tied: saved once, as the embeddings
        name = next(n for n, m in model.named_modules() if m is head)
        full.pop(f"{name}.weight", None)
    return full if is_main() else None
