"""CIR at the sizes of real checkpoints: one bfloat16 epoch on models with the architectures of
Llama-3.2-1B, Llama-3.1-8B and Qwen2.5-7B, with random weights (nothing is downloaded).

    python bench/scale.py [--shapes llama-3.2-1b,llama-3.1-8b,qwen2.5-7b] [--layers N] [--facts 48]
                          [--statistics covariance|rows] [--label NAME]

Each shape runs in a process of its own (its peak memory is its own): the bundled tokenizer's
ids, the `capitals` facts' training texts (4 phrasings each, as an epoch draws them), CIR as the
paper ran it (MLP breaking, layers 0-12 trained and 6-11 in the loss, scaled by depth; update
from every token; no retain-aware collapse), weights in bfloat16 with float32 master copies of
the trained projections. Timed apart: the statistics pass (pass 0), one epoch (statistics,
update, retain step, decomposition) and the stop rule's evaluations (text loss in float32,
forget accuracy). `--layers N` keeps the first N decoder layers (a cut: all of them trained,
the last in the loss). The decomposition is also timed three ways on the widest statistics:
the covariance path (`top_components`), the rows' randomized SVD, and, on a GPU, `eigh` on the
batch of a layer's covariances; each against the first by the largest principal angle.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch

# the configs of the real checkpoints (config.json on the hub), less what only generation reads
LLAMA_3 = dict(model_type="llama", num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
               max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0)
LLAMA_3_ROPE = dict(rope_type="llama3", low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
SHAPES = {
    "llama-3.2-1b": LLAMA_3 | dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, head_dim=64,
                                   tie_word_embeddings=True, rope_scaling=LLAMA_3_ROPE | dict(factor=32.0)),
    "llama-3.1-8b": LLAMA_3 | dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, head_dim=128,
                                   tie_word_embeddings=False, rope_scaling=LLAMA_3_ROPE | dict(factor=8.0)),
    "qwen2.5-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, max_position_embeddings=131072,
                       rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=1000000.0),
}
# CIR as configs/paper-llama-3.1-8b.yaml runs it; layers left to scale by depth
PAPER = dict(forget_loss="mlp_breaking", unlearning_rate=0.2, act_components=23, grad_components=35,
             retain_rate=3e-4, collapse="paper", update_tokens="all", stats_tokens="all", retain_components=0)


def build_config(shape: str, layers: int | None = None):
    from transformers import AutoConfig

    values = dict(SHAPES[shape])
    if layers is not None:
        values["num_hidden_layers"] = layers
    return AutoConfig.for_model(values.pop("model_type"), **values)


def build_model(shape: str, layers: int | None = None, device="meta", dtype=torch.bfloat16):
    """A model of `shape` (random weights; on the meta device: no memory at all)."""
    from transformers import AutoModelForCausalLM

    config = build_config(shape, layers)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def method_config(n_layers: int, cut: bool, statistics: str):
    """The paper's CIR; in a cut, every layer trained and the last in the loss."""
    from cir.methods.cir import CIRConfig

    layers = dict(train_layers=list(range(n_layers)), loss_layers=[n_layers - 1]) if cut else {}
    return CIRConfig(**PAPER, **layers, statistics=statistics).resolve(n_layers)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn):
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - start, value


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def moments_mb(method) -> tuple[float, float]:
    """(MiB the statistics hold now, MiB they would hold as d x d float32 sums)."""
    unique = {id(m): m for stats in method.stats.values() for m in (stats.acts, stats.grads)}.values()
    held = sum(t.numel() * t.element_size() for m in unique
               for t in [m.sum] + ([m.outer] if m.outer is not None else []) + list(getattr(m, "rows", [])))
    square = sum(m.sum.numel() ** 2 * 4 for m in unique)
    return held / 2**20, square / 2**20


def largest_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """sin of the largest principal angle between the row spans of orthonormal a and b (k, d)."""
    cosines = torch.linalg.svdvals(a.double() @ b.double().T)
    return math.sqrt(max(0.0, 1 - float(cosines.min()) ** 2))


def decompositions(method, k: int, device: torch.device) -> dict:
    """The widest statistics decomposed three ways: seconds each and the subspace against the first."""
    from cir.methods.collapse import StreamingMoments, rows_components, top_components

    stats = [s for s in method.stats.values()]
    moments = max((m for s in stats for m in (s.acts, s.grads)), key=lambda m: m.sum.numel())
    rows = torch.cat(moments.rows).double() - moments.mean if getattr(moments, "rows", None) else None
    covariance = StreamingMoments.covariance(moments) if rows is None else (rows.T @ rows) / moments.count
    seconds, (_, reference) = timed(device, lambda: top_components(covariance.cpu(), k))
    out = {"width": moments.sum.numel(), "rows": moments.count,
           "covariance path, CPU (s)": round(seconds, 3)}
    if device.type == "cuda":
        seconds, (_, on_device) = timed(device, lambda: top_components(covariance, k))
        out["covariance path, GPU (s)"], out["covariance path, GPU: angle"] = round(seconds, 3), largest_angle(
            on_device.cpu(), reference)
        same = [m for s in stats for m in (s.acts, s.grads) if m.sum.numel() == moments.sum.numel()][:4]
        batch = torch.stack([covariance] * len(same))
        seconds, (_, vectors) = timed(device, lambda: torch.linalg.eigh(batch))
        out[f"eigh, batch of {len(same)}, GPU (s per matrix)"] = round(seconds / len(same), 3)
        out["eigh: angle"] = largest_angle(vectors[0].flip(1)[:, :k].T.cpu(), reference)
    if rows is not None:
        seconds, (_, vectors) = timed(device, lambda: rows_components(rows / moments.count ** 0.5, k))
        out[f"rows, randomized SVD, {device.type} (s)"] = round(seconds, 3)
        out["rows: angle"] = largest_angle(vectors.cpu(), reference)
    return out


def run_shape(shape: str, layers: int | None = None, n_facts: int = 48, statistics: str = "rows",
              device: str | None = None, decompose: bool = True) -> dict:
    """One CIR epoch in bfloat16 on a random-weight model of `shape`; its figures."""
    from transformers import AutoTokenizer

    from cir.training.batches import forget_batches, text_batches
    from cir.data import load_facts
    from cir.data.general import builtin_prompts
    from cir.evaluation.scoring import text_loss
    from cir.evaluation.probes import cloze_and_recall
    from cir.models import in_float32
    from cir.methods.cir import CIR
    from cir.models import DEFAULT_MODEL, resolve

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    build_s, model = timed(device, lambda: build_model(shape, layers, device))
    tokenizer = AutoTokenizer.from_pretrained(resolve(DEFAULT_MODEL))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    facts = load_facts("capitals")[:n_facts]
    forget = [b.to(device) for b in forget_batches(tokenizer, facts, 32, 64, phrasings=4, seed=1)]
    retain = [b.to(device) for b in text_batches(tokenizer, builtin_prompts(), 16, max_length=128)]
    n_layers = model.config.num_hidden_layers
    config = method_config(n_layers, layers is not None, statistics)
    figures = {"shape": shape, "layers": n_layers, "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
               "facts": len(facts), "sentences": sum(len(b) for b in forget), "statistics": statistics,
               "device": device.type, "build_s": round(build_s, 1), "train_layers": config.train_layers}
    setup_s, method = timed(device, lambda: CIR(model, tokenizer, config, forget, retain))
    prepare_s, _ = timed(device, method.prepare)
    figures["statistics MiB (held, as d x d float32)"] = [round(v) for v in moments_mb(method)]
    figures["master copies MiB"] = round(sum(t.numel() * 4 for t in method.masters.values()) / 2**20)
    before = {n: p.detach().clone() for n, p in method.trained_parameters().items()}
    epoch_s, _ = timed(device, lambda: method.run_epoch(1))
    figures["weights changed"] = sum(not torch.equal(p, before[n]) for n, p in method.trained_parameters().items())
    heldout = builtin_prompts()[:32]

    def text():
        with in_float32(model):
            return text_loss(model, tokenizer, heldout)

    text_s, _ = timed(device, text)
    accuracy_s, _ = timed(device, lambda: cloze_and_recall(model, tokenizer, facts))
    figures |= {"setup_s": round(setup_s, 2), "pass0_s": round(prepare_s, 2), "epoch_s": round(epoch_s, 2),
                "epoch_s_per_fact": round(epoch_s / len(facts), 3),
                "stop rule: text loss (float32) s": round(text_s, 2), "stop rule: forget accuracy s": round(accuracy_s, 2),
                "peak_mb": round(peak_mb(device))}
    if decompose:
        figures["decomposition"] = decompositions(method, max(config.act_components, config.grad_components), device)
    return figures


def table(rows: list[dict]) -> str:
    lines = ["| shape | layers | parameters (B) | statistics | s per fact per epoch | epoch (s) | pass 0 (s) | "
             "stop rule: text loss / forget accuracy (s) | statistics MiB (held; as covariances) | "
             "master copies MiB | peak MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        held, square = r["statistics MiB (held, as d x d float32)"]
        lines.append(f"| {r['shape']} | {r['layers']} | {r['parameters_b']} | {r['statistics']} | "
                     f"**{r['epoch_s_per_fact']:.3f}** | {r['epoch_s']:.1f} | {r['pass0_s']:.1f} | "
                     f"{r['stop rule: text loss (float32) s']:.1f} / {r['stop rule: forget accuracy s']:.1f} | "
                     f"{held:,}; {square:,} | {r['master copies MiB']:,} | {r['peak_mb']:,} |")
    decompositions = [f"- {r['shape']} ({r['layers']} layers), the widest statistics ({r['decomposition']['width']} wide, "
                      f"{r['decomposition']['rows']} rows): " + ", ".join(
                          f"{k} {v:.2e}" if "angle" in k else f"{k} {v}" for k, v in r["decomposition"].items()
                          if k not in ("width", "rows")) for r in rows if "decomposition" in r]
    return "\n".join(lines + [""] + decompositions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--layers", type=int, default=None, help="keep the first N decoder layers (a cut)")
    parser.add_argument("--facts", type=int, default=48)
    parser.add_argument("--statistics", choices=["covariance", "rows"], default="rows")
    parser.add_argument("--label", default=None, help="also write the table into docs/benchmarks.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run this shape in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_shape(args.one, args.layers, args.facts, args.statistics)))
        return
    rows = []
    for shape in args.shapes.split(","):
        command = [sys.executable, __file__, "--one", shape, "--facts", str(args.facts), "--statistics", args.statistics]
        command += ["--layers", str(args.layers)] if args.layers else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{shape}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    body = table(rows)
    print(body)
    if args.label:
        from _common import write_section

        cut = f", the first {args.layers} layers" if args.layers else ""
        write_section(f"scale:{args.label}", f"## CIR at the size of real checkpoints: {args.label}\n\n"
                      f"One bfloat16 epoch of the paper's CIR (random weights{cut}; {args.facts} facts, statistics "
                      f"as {args.statistics}):\n\n{body}\n")


if __name__ == "__main__":
    main()
