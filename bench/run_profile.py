"""Where an unlearning run's time goes: one run at the defaults on the bundled model, split
into the parts of the method and of the stop rule's evaluations.

    python bench/run_profile.py [--topic capitals] [--epochs 2] [--label NAME] [key=value ...]

Every epoch runs (the budgets are lifted), so each part is timed over `--epochs` epochs. Time
is charged to the outermost part running (the retain step's own forward and backward count as
the retain step); what no part covers (batch slicing, masks, bookkeeping) is "other". The table
goes into docs/benchmarks.md under `--label` (default: the current code), next to the earlier
ones; the whole run at the defaults, with its stop rule, is timed separately (`--full`).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections import defaultdict

import torch
from _common import BENCHMARKS, machine, write_section

# (object, attribute, part): the functions timed; the forget-loss forward is added per loss
PARTS = [
    ("cir.unlearning.loop:Disruption.__init__", "measure before: text loss"),
    ("cir.unlearning.loop:Collateral.__init__", "measure before: watched topics"),
    ("cir.unlearning.loop:evaluate_battery", "probe battery (before and after)"),
    ("cir.methods.base:Method.__init__", "loss references (once)"),
    ("cir.methods.cir:CIR._collect_retain_bases", "retain-aware bases (once)"),
    ("torch:Tensor.backward", "backward"),
    ("cir.methods.collapse:StreamingMoments.update", "statistics"),
    ("cir.methods.cir:CIR._finish_stats", "decomposition"),
    ("cir.methods.cir:collapse", "update"),
    ("cir.methods.cir:weight_grad_from", "update"),
    ("cir.methods.base:Method.step", "update"),
    ("cir.methods.base:Method.retain_step", "retain step"),
    ("cir.unlearning.loop:cloze_and_recall", "forget-accuracy evaluation"),
    ("cir.unlearning.loop:Disruption.__call__", "disruption evaluation"),
    ("cir.unlearning.loop:Collateral.__call__", "collateral evaluation"),
]
EPOCH_PARTS = ["forward", "backward", "statistics", "decomposition", "update", "retain step",
               "forget-accuracy evaluation", "disruption evaluation", "collateral evaluation"]


class Profile:
    """Seconds per (phase, part); the phase is "setup" until the first epoch, then "epochs"."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.active = False
        self.phase = "setup"
        self.patches = []
        self.synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def wrap(self, target: str, part: str) -> None:
        import importlib

        module_name, attr_path = target.split(":")
        owner = importlib.import_module(module_name)
        *parents, attr = attr_path.split(".")
        for name in parents:
            owner = getattr(owner, name)
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self.active:  # charged to the outer part
                return original(*args, **kwargs)
            self.active = True
            self.synchronize()  # on a GPU, the work queued before belongs to the part before
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.synchronize()
                self.seconds[(self.phase, part)] += time.perf_counter() - start
                self.active = False

        setattr(owner, attr, timed)
        self.patches.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self.patches):
            setattr(owner, attr, original)


def profiled_run(model, tokenizer, facts, epochs: int, options: dict) -> tuple[dict, float, object]:
    import cir
    from cir.methods.base import Method

    profile = Profile()
    for target, part in PARTS:
        profile.wrap(target, part)
    from cir.unlearning.run_config import make_configs
    from cir.methods.losses import FORGET_LOSSES

    _, method_config = make_configs(options.get("method"), options=options)
    loss = getattr(method_config, "forget_loss", None)
    if loss in FORGET_LOSSES:
        cls = FORGET_LOSSES[loss]
        profile.wrap(f"{cls.__module__}:{cls.__name__}.__call__", "forward")
    original_epoch = Method.run_epoch

    def run_epoch(self, epoch):
        profile.phase = "epochs"
        return original_epoch(self, epoch)

    Method.run_epoch = run_epoch
    try:
        result = cir.unlearn(model, tokenizer, facts, **(options | {"max_epochs": epochs, "budget": 1e9,
                                                                      "collateral_budget": 1.0}))
    finally:
        Method.run_epoch = original_epoch
        profile.restore()
    return dict(profile.seconds), result.seconds, result


def table(seconds: dict, total: float, epochs: int) -> str:
    """Per epoch: the epochs' share of each part of an update epoch; once per run: every other
    part (the probe battery runs before and after), and pass 0 (statistics only, with the
    measurements of the original model as epoch 0's row)."""
    epoch = {part: s for (phase, part), s in seconds.items() if phase == "epochs" and part in EPOCH_PARTS}
    epoch_total = sum(epoch.values())
    lines = ["| part | seconds per epoch | share of an epoch |", "|---|---|---|"]
    for part in EPOCH_PARTS:
        lines.append(f"| {part} | {epoch.get(part, 0.0) / epochs:.2f} | {epoch.get(part, 0.0) / epoch_total:.0%} |")
    lines.append(f"| **epoch** | **{epoch_total / epochs:.2f}** | |")
    lines += ["", "| once per run | seconds |", "|---|---|"]
    once = defaultdict(float)
    for (phase, part), s in seconds.items():
        if part not in EPOCH_PARTS:
            once[part] += s
        elif phase == "setup":
            once["pass 0 and epoch 0's row (" + ", ".join(p for p in EPOCH_PARTS if ("setup", p) in seconds) + ")"] += s
    for part, s in sorted(once.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {part} | {s:.2f} |")
    lines.append(f"| other (untimed: batches, masks, bookkeeping) | {total - sum(seconds.values()):.2f} |")
    lines.append(f"| **whole run ({epochs} epochs)** | **{total:.2f}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--topic", default="capitals")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--label", default="current code")
    parser.add_argument("--full", action="store_true", help="also time a whole run at the defaults, with its stop rule")
    parser.add_argument("options", nargs="*")
    args = parser.parse_args()

    import cir
    from cir.unlearning.overrides import parse_overrides
    from cir.distributed import device

    torch.manual_seed(0)
    options = dict(parse_overrides(args.options))
    model, tokenizer = cir.load_model(args.model, device=device())  # the GPU where there is one
    facts = cir.load_facts(args.topic)
    cir.unlearn(model, tokenizer, facts[:2], max_epochs=1, progress=False)  # warm-up; sampled text cached
    model, tokenizer = cir.load_model(args.model, device=device())
    seconds, total, result = profiled_run(model, tokenizer, facts, args.epochs, options)
    body = table(seconds, total, args.epochs)
    full = ""
    if args.full:
        model, tokenizer = cir.load_model(args.model, device=device())
        run = cir.unlearn(model, tokenizer, facts, **options)
        full = (f"\nThe whole run at the defaults, with its stop rule: {run.seconds:.0f} s for {run.n_facts} facts, "
                f"**{run.seconds_per_fact:.2f} s per fact** (kept epoch {run.kept_epoch}; {run.stop_reason}).\n")
    record = {"label": args.label, "topic": args.topic, "epochs": args.epochs, "options": options,
              "seconds": {f"{phase}/{part}": round(s, 3) for (phase, part), s in seconds.items()},
              "total": round(total, 3), "machine": machine()}
    log = BENCHMARKS.parent / "profile.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")
    write_section(f"profile:{args.label.replace(' ', '-')}", f"""## Profile of one unlearning run: {args.label}

`{args.topic}` ({len(facts)} facts) at the defaults{' with ' + ' '.join(args.options) if args.options else ''}, {args.epochs} epochs, budgets lifted so that every epoch runs:

{body}
{full}""")


if __name__ == "__main__":
    main()
