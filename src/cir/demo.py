"""The demo: unlearn a benchmark's forget set (or one built-in topic) from a model, then try to
bring it back.

Rows: before, after unlearning, after a relearning attack on half of the topic's questions
(T), after 4-bit quantisation (the attack suite, cir.attacks.suite). The topic's accuracy is
read on the other half (V), which the attack never saw, with the cloze prompt and in the worst
of the held-out probes (the probe battery, cir.attacks.probes); the other topics show
collateral damage, on their reported half: the collateral budget watches a quarter of each and
the method is given another quarter to keep, as in cir.comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cir.api import unlearn_to_dir
from cir.attacks.membership import mia
from cir.attacks.record import record_attack
from cir.attacks.suite import AttackConfig, measure, suite
from cir.benchmarks import Setting, check_benchmark, make_setting, topic_setting
from cir.data import builtin_topics
from cir.errors import InputError
from cir.outputs import stage, write_json
from cir.report import markdown_table
from cir.comparison import PROTECTED, REPORTED
from cir.loop import UnlearningResult, watched_retain_sets


@dataclass
class DemoSettings(AttackConfig):
    """What to forget (a named benchmark, or a built-in topic), and the attack suite's settings
    (its seed also draws T and V)."""

    topic: str = "capitals"
    benchmark: str | None = None  # capitals, subjects, taught (cir.benchmarks); overrides `topic`

    def __post_init__(self):
        super().__post_init__()
        if self.benchmark is not None:
            check_benchmark(self.benchmark)
        elif self.topic not in builtin_topics():
            raise InputError(f"unknown built-in topic '{self.topic}' (known: {', '.join(builtin_topics())})")

    @property
    def name(self) -> str:
        return self.benchmark or self.topic

    def setting(self, model, tokenizer, progress: bool = True) -> Setting:
        if self.benchmark is not None:
            return make_setting(self.benchmark, model, tokenizer, progress=progress)
        return topic_setting(self.topic, model, tokenizer)


def attacks(model, tokenizer, topics: dict, train: list, held_out: list, settings: DemoSettings) -> dict:
    """The attack suite's rows (each attack on its own copy), labelled as the demo shows them."""
    rows = suite(model, tokenizer, train, held_out, topics=topics, config=settings, progress=True)
    return {"after relearning on T": rows["relearn"],
            f"after {settings.quantize_bits}-bit quantisation": rows["quantize"]}


def never_learned(setting: Setting, topics: dict, train: list, held_out: list, settings: DemoSettings) -> dict:
    """The same measurements and attacks on the never-taught reference model."""
    reference, tokenizer = setting.reference, setting.tokenizer
    rows = {"before": measure(reference, tokenizer, topics, held_out)}
    rows |= attacks(reference, tokenizer, topics, train, held_out, settings)
    rows["after relearning on T"].pop("_relearn")
    return rows


def residuals(rows: dict, reference: dict) -> dict:
    """Per row, V and V worst minus the never-taught model's under the same attack (0: as if
    never learned); the unlearned model is held against the never-taught one unattacked."""
    against = {"after unlearning": "before"}  # otherwise a row meets the reference's row of its name
    paired = {name: against.get(name, name) for name in rows}
    return {name: {key: rows[name][key] - reference[ref][key] for key in ("V", "V worst")}
            for name, ref in paired.items() if ref in reference}


def membership(setting: Setting, model) -> dict | None:
    """Membership inference, F's sentences against never-taught facts' (AUC of the min-k score)."""
    if not setting.nonmembers:
        return None
    members = [s for item in setting.forget for s in item.sentences()]
    return mia(model, setting.tokenizer, members, setting.nonmembers)


def run_demo(model, tokenizer, out: str | Path, settings: DemoSettings, **unlearning) -> tuple[str, dict, UnlearningResult]:
    """Make the benchmark on `model`, measure, unlearn its forget set into the run directory
    `out` (`unlearning`: as for cir.unlearn_to_dir), measure again, attack; where the benchmark
    has a never-taught reference, attack that too and report the residual. Writes demo.md,
    demo.json and the relearning attack (attacks.json) into `out`; returns (table, rows,
    unlearning result)."""
    show = unlearning.get("progress", True)
    setting = settings.setting(model, tokenizer, progress=show)
    model = setting.model
    # each kept topic in the comparison's three parts (cir.comparison): a quarter watched by the
    # collateral budget (unlearn_to_dir watches the even half of what it is given: of the even
    # half, WATCHED), another given to the method to keep, and the reported half the table
    # shows, which nothing reads before (unlearn_to_dir leaves out what restates a forget fact)
    watch = {name: items[0::2] for name, items in setting.topics.items()}
    protect = {name: items[PROTECTED] for name, items in setting.topics.items()}
    topics = {settings.name: setting.forget} | watched_retain_sets(setting.forget, setting.topics, REPORTED)
    train, held_out = settings.split(setting.forget)
    stage(f"measuring the model before unlearning ({len(setting.forget)} facts to forget, "
          f"{len(topics) - 1} kept sets, every probe)", show)
    rows = {"before": measure(model, tokenizer, topics, held_out)}
    # the questions behind each column's accuracy
    extra = {"benchmark": settings.name, "notes": setting.notes,
             "questions": {name: len(items) for name, items in topics.items()} | {"V": len(held_out)}}
    extra["mia"] = {"before": membership(setting, model)}
    unlearning.setdefault("sources", {})["benchmark"] = settings.name
    if setting.general is not None:
        unlearning["sources"]["retain"] = "sampled from the model before teaching"
        unlearning["retain"], unlearning["heldout"] = setting.general
    result = unlearn_to_dir(model, tokenizer, setting.forget, out, watch=watch, protect=protect, **unlearning)
    stage("measuring the unlearned model", show)
    rows["after unlearning"] = measure(model, tokenizer, topics, held_out)
    extra["mia"]["after unlearning"] = membership(setting, model)
    stage(f"attacking it: relearning on T ({len(train)} facts), then {settings.quantize_bits}-bit quantisation", show)
    rows |= attacks(model, tokenizer, topics, train, held_out, settings)
    relearning = rows["after relearning on T"].pop("_relearn")
    if setting.reference is not None:
        stage("the never-taught model: the same measurements and attacks", show)
        extra["never_taught"] = never_learned(setting, topics, train, held_out, settings)
        extra["residual"] = residuals(rows, extra["never_taught"])
    table = demo_table(settings, rows, result, extra)
    write_demo(Path(out), settings, rows, table, extra)
    record_attack(out, "relearn:mlp", relearning)
    return table, rows | {"_extra": extra}, result


def demo_table(settings: DemoSettings, rows: dict[str, dict], result: UnlearningResult, extra: dict | None = None) -> str:
    extra = extra or {}
    name = settings.name
    others = [t for t in next(iter(rows.values())) if t not in ("V", "V worst", name) and not t.startswith("_")]
    header = ["", f"{name} V", "V, worst probe", f"{name} (all)"] + others
    table = [[label, f"{row['V']:.3f}", f"{row['V worst']:.3f}", f"{row[name]:.3f}"]
             + [f"{row[t]:.3f}" for t in others] for label, row in rows.items()]
    reference = extra.get("never_taught")
    if reference:
        table += [[f"never taught, {label}", f"{row['V']:.3f}", f"{row['V worst']:.3f}", f"{row[name]:.3f}"]
                  + [f"{row[t]:.3f}" for t in others] for label, row in reference.items()]
    before, after = rows["before"], rows["after unlearning"]
    worst = min(after[t] - before[t] for t in others)
    lines = [
        markdown_table(header, table),
        "",
        f"- V: the held-out part of `{name}` (its own subjects) that the relearning attack never trains on "
        f"(relearning reports the best epoch); chance is 0.25",
        "- V, worst probe: the highest accuracy on V over the held-out probes (cloze, the questions' own "
        "rewordings, qa, the declarative stem, k-shot, recall: each choice's first token), none of which is in "
        "any training text, each also read the other way (the least likely choice as the answer: a model that "
        "avoids the right answers still knows them)",
        f"- largest drop on another set after unlearning: {worst:+.3f} (each set's reported half: neither watched "
        "by the collateral budget nor given to the method)",
        f"- held-out general-text loss after unlearning: x{result.kept['loss_ratio']:.4f} of the original",
        f"- unlearning: {result.seconds:.0f} s for {result.n_facts} facts "
        f"({result.seconds_per_fact:.2f} s per fact); stopped by: {result.stop_reason}",
    ]
    if "residual" in extra:
        lines.append("- residual (V minus the never-taught model's V under the same attack; 0 = as never learned): "
                     + "; ".join(f"{label}: {r['V']:+.3f}, worst probe {r['V worst']:+.3f}"
                                 for label, r in extra["residual"].items()))
    mia_rows = {k: v for k, v in extra.get("mia", {}).items() if v}
    if mia_rows:
        lines.append("- membership inference, F's sentences against never-taught people's (AUC, min-k%; 0.5 = "
                     "indistinguishable): " + ", ".join(f"{k} {v['auc']['min_k']:.3f}" for k, v in mia_rows.items()))
    return "\n".join(lines)


def write_demo(out: Path, settings: DemoSettings, rows: dict, table: str, extra: dict | None = None) -> None:
    (out / "demo.md").write_text(f"# Demo: forgetting `{settings.name}`\n\n{table}\n")
    write_json(out / "demo.json", {"settings": settings.__dict__, "rows": rows} | (extra or {}))
