"""The demo: unlearn one built-in topic from a model, then try to bring it back.

Rows: before, after unlearning, after a relearning attack on half of the topic's questions
(T), after 4-bit quantisation (the attack suite, cir.attacks.suite). The topic's accuracy is
read on the other half (V), which the attack never saw, with the cloze prompt and in the worst
of the held-out probes (the probe battery, cir.attacks.probes); the other topics show
collateral damage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cir.api import unlearn_to_dir
from cir.attacks.record import record_attack
from cir.attacks.suite import AttackConfig, measure, suite
from cir.data import builtin_topics, topic_sets
from cir.errors import InputError
from cir.outputs import write_json
from cir.report import markdown_table
from cir.loop import UnlearningResult


@dataclass
class DemoSettings(AttackConfig):
    """The topic to forget, and the attack suite's settings (its seed also draws T and V)."""

    topic: str = "capitals"

    def __post_init__(self):
        super().__post_init__()
        if self.topic not in builtin_topics():
            raise InputError(f"unknown built-in topic '{self.topic}' (known: {', '.join(builtin_topics())})")


def attacks(model, tokenizer, topics: dict, train: list, held_out: list, settings: DemoSettings) -> dict:
    """The attack suite's rows (each attack on its own copy), labelled as the demo shows them."""
    rows = suite(model, tokenizer, train, held_out, topics=topics, config=settings, progress=True)
    return {"after relearning on T": rows["relearn"],
            f"after {settings.quantize_bits}-bit quantisation": rows["quantize"]}


def run_demo(model, tokenizer, out: str | Path, settings: DemoSettings, **unlearning) -> tuple[str, dict, UnlearningResult]:
    """Measure, unlearn the topic from `model` (in place) into the run directory `out`
    (`unlearning`: as for cir.unlearn_to_dir), measure again, attack. Writes demo.md, demo.json
    and the relearning attack (attacks.json) into `out`; returns (table, rows, unlearning result)."""
    topics = topic_sets()
    train, held_out = settings.split(topics[settings.topic])
    rows = {"before": measure(model, tokenizer, topics, held_out)}
    result = unlearn_to_dir(model, tokenizer, settings.topic, out, **unlearning)  # T and V both
    rows["after unlearning"] = measure(model, tokenizer, topics, held_out)
    rows |= attacks(model, tokenizer, topics, train, held_out, settings)
    relearning = rows["after relearning on T"].pop("_relearn")
    table = demo_table(settings, rows, result)
    write_demo(Path(out), settings, rows, table)
    record_attack(out, "relearn:mlp", relearning)
    return table, rows, result


def demo_table(settings: DemoSettings, rows: dict[str, dict], result: UnlearningResult) -> str:
    topics = [t for t in next(iter(rows.values())) if t not in ("V", "V worst") and not t.startswith("_")]
    others = [t for t in topics if t != settings.topic]
    header = ["", f"{settings.topic} V", "V, worst probe", f"{settings.topic} (all)"] + others
    table = [[name, f"{row['V']:.3f}", f"{row['V worst']:.3f}", f"{row[settings.topic]:.3f}"]
             + [f"{row[t]:.3f}" for t in others] for name, row in rows.items()]
    before, after = rows["before"], rows["after unlearning"]
    worst = min(after[t] - before[t] for t in others)
    lines = [
        markdown_table(header, table),
        "",
        f"- V: the held-out half of `{settings.topic}` that the relearning attack never trains on "
        f"(relearning reports the best epoch); chance is 0.25",
        "- V, worst probe: the highest accuracy on V over the held-out probes (cloze, the questions' own "
        "rewordings, qa, the declarative stem, k-shot, recall: each choice's first token), none of which is in "
        "any training text",
        f"- largest drop on another topic after unlearning: {worst:+.3f}",
        f"- held-out general-text loss after unlearning: x{result.kept['loss_ratio']:.4f} of the original",
        f"- unlearning: {result.seconds:.0f} s for {result.n_facts} facts "
        f"({result.seconds_per_fact:.2f} s per fact); stopped by: {result.stop_reason}",
    ]
    return "\n".join(lines)


def write_demo(out: Path, settings: DemoSettings, rows: dict, table: str) -> None:
    (out / "demo.md").write_text(f"# Demo: forgetting `{settings.topic}`\n\n{table}\n")
    write_json(out / "demo.json", {"settings": settings.__dict__, "rows": rows})
