"""The demo: unlearn one built-in topic from a model, then try to bring it back.

Rows: before, after unlearning, after a relearning attack on half of the topic's questions
(T), after 4-bit quantisation. The topic's accuracy is read on the other half (V), which the
attack never saw, with the cloze prompt and in the worst of the held-out probes (the probe
battery, cir.attacks.probes); the other topics show collateral damage.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from cir.data import builtin_topics, load_mcq
from cir.evaluation import evaluate_mcq
from cir.report import markdown_table


@dataclass
class DemoSettings:
    topic: str = "capitals"
    split_ratio: float = 0.5  # share of the topic's questions the attacker may train on (T)
    relearn_epochs: int = 6
    relearn_lr: float = 3e-5  # Adam on the MLPs: stronger than the paper's 1e-5 over 10 epochs
    quantize_bits: int = 4
    seed: int = 0


def accuracies(model, tokenizer, sets: dict) -> dict[str, float]:
    return {name: evaluate_mcq(model, tokenizer, items).accuracy for name, items in sets.items()}


def measure(model, tokenizer, topics: dict, held_out: list) -> dict:
    row = accuracies(model, tokenizer, topics)
    row["V"] = evaluate_mcq(model, tokenizer, held_out).accuracy
    return row | worst_probe(model, tokenizer, held_out)


def worst_probe(model, tokenizer, held_out: list, floor: float = 0.0) -> dict:
    """V in the worst held-out probe (at least `floor`: an attack's best cloze epoch)."""
    from cir.attacks.probes import evaluate_battery

    battery = evaluate_battery(model, tokenizer, held_out)
    return {"V worst": max(battery.worst_accuracy, floor), "_probes": battery.to_json()}


def attacks(model, tokenizer, topics: dict, train: list, held_out: list, settings: DemoSettings) -> dict:
    """Relearning and quantisation, each on its own copy of the unlearned model."""
    from cir.attacks import quantize_model, relearn

    rows = {}
    relearned = copy.deepcopy(model)
    result = relearn(relearned, tokenizer, train, held_out, epochs=settings.relearn_epochs, lr=settings.relearn_lr,
                     optimizer="adam", params="mlp", seed=settings.seed, progress=True)
    rows["after relearning on T"] = (accuracies(relearned, tokenizer, topics) | {"V": result["max_accuracy"]}
                                     | worst_probe(relearned, tokenizer, held_out, floor=result["max_accuracy"]))
    rows["after relearning on T"]["_relearn"] = result
    del relearned
    quantized = copy.deepcopy(model)
    quantize_model(quantized, bits=settings.quantize_bits)
    rows[f"after {settings.quantize_bits}-bit quantisation"] = measure(quantized, tokenizer, topics, held_out)
    return rows


def demo_table(settings: DemoSettings, rows: dict[str, dict], result) -> str:
    topics = [t for t in next(iter(rows.values())) if t not in ("V", "V worst") and not t.startswith("_")]
    others = [t for t in topics if t != settings.topic]
    header = ["", f"{settings.topic} V", "V, worst probe", f"{settings.topic} (all)"] + others
    table = [[name, f"{row['V']:.3f}", f"{row['V worst']:.3f}", f"{row[settings.topic]:.3f}"]
             + [f"{row[t]:.3f}" for t in others] for name, row in rows.items()]
    kept = result.metrics[result.kept_epoch]
    before, after = rows["before"], rows["after unlearning"]
    worst = min(after[t] - before[t] for t in others)
    lines = [
        markdown_table(header, table),
        "",
        f"- V: the held-out half of `{settings.topic}` that the relearning attack never trains on "
        f"(relearning reports the best epoch); chance is 0.25",
        "- V, worst probe: the highest accuracy on V over the held-out probes (cloze, the questions' own "
        "rewordings, qa, the declarative stem, k-shot), none of which is in any training text",
        f"- largest drop on another topic after unlearning: {worst:+.3f}",
        f"- held-out general-text loss after unlearning: x{kept['loss_ratio']:.4f} of the original",
        f"- unlearning: {result.seconds:.0f} s for {result.n_facts} facts "
        f"({result.seconds / max(result.n_facts, 1):.2f} s per fact); stopped by: {result.stop_reason}",
    ]
    return "\n".join(lines)


def write_demo(out: Path, settings: DemoSettings, rows: dict, table: str) -> None:
    (out / "demo.md").write_text(f"# Demo: forgetting `{settings.topic}`\n\n{table}\n")
    (out / "demo.json").write_text(json.dumps({"settings": settings.__dict__, "rows": rows}, indent=2))


def topic_sets() -> dict:
    return {t: load_mcq(t) for t in builtin_topics()}
