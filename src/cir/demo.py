"""The demo: make a benchmark (or take one built-in topic), unlearn its forget set from a model,
then audit the result (cir.auditing): one code path with `cir audit`.

Rows: before, after unlearning, after each attack of the grid (cir.attacks.grids: relearning at
several learning rates, weights, epochs and texts; 4- and 8-bit quantisation). The topic's
accuracy is read on the half of its questions (V) that no attack trains on, with the cloze
prompt and in the worst of the held-out probes (the probe battery, cir.evaluation.probes); the
other topics show collateral damage, on their reported half: the collateral budget watches a
quarter of each and the method is given another quarter to keep, as in cir.comparison. The
headline is the worst attack (the highest V in the worst probe). Where the benchmark has them,
the never-taught and the retain model (taught all but F) meet the same attacks, and the residual
is V on the unlearned model minus theirs; PrivLeak compares membership inference with the
retain model's. demo.md shows it as tables; the audit's report (OUT/audit) gives the verdict.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from cir.api import unlearn_to_dir
from cir.auditing import AuditSettings, attack_rows, audit_json, audit_rows, verdict, write_audit
from cir.attacks.record import record_attack
from cir.benchmarks import DRAWN, Setting, check_benchmark, make_setting, topic_setting
from cir.data import builtin_topics
from cir.data.general import general_text_split
from cir.errors import InputError
from cir.evaluation.statistics import Interval
from cir.evaluation.protocol import PROTECTED, REPORTED, WATCHED, watched_retain_sets
from cir.evaluation.rows import Row
from cir.outputs import write_json
from cir.tables import markdown_table
from cir.unlearning.loop import UnlearningResult


@dataclass
class DemoSettings:
    """What to forget (a named benchmark, or a built-in topic), the attack grid, and the seed that
    draws T and V and seeds the attacks."""

    topic: str = "capitals"
    benchmark: str | None = None  # capitals, subjects, taught (cir.benchmarks); overrides `topic`
    attacks: str = "default"  # the attack grid (cir.attacks.grids.GRIDS): suite, default, wide, full
    seed: int = 0
    split_ratio: float = 0.5  # share of the forget questions the attacker trains on (T); the rest is V
    # the benchmark's own draw (taught: which invented people are made and taught, a model taught and
    # cached for each; subjects: which countries are forgotten); None: the benchmark's own (0).
    # Judging seeds with forget sets of their own (taught's draws 0-3 share no forget question)
    # pool as independent strata; seeds that re-split one forget set share questions
    draw: int | None = None

    def __post_init__(self):
        if self.benchmark is not None:
            check_benchmark(self.benchmark)
        elif self.topic not in builtin_topics():
            raise InputError(f"unknown built-in topic '{self.topic}' (known: {', '.join(builtin_topics())})")
        if self.draw is not None and self.benchmark not in DRAWN:
            raise InputError(f"draw: {self.name} has nothing drawn (benchmarks with a draw: {', '.join(sorted(DRAWN))})")
        self.audit = AuditSettings(self.attacks, self.seed, self.split_ratio)  # checks the grid and the ratio

    @property
    def name(self) -> str:
        return self.benchmark or self.topic

    def setting(self, model, tokenizer, progress: bool = True) -> Setting:
        if self.benchmark is not None:
            drawn = {} if self.draw is None else {"seed": self.draw}
            return make_setting(self.benchmark, model, tokenizer, progress=progress, **drawn)
        return topic_setting(self.topic, model, tokenizer)


def run_demo(model, tokenizer, out: str | Path, settings: DemoSettings, **unlearning) -> tuple[str, dict, UnlearningResult]:
    """Make the benchmark on `model`, unlearn its forget set into the run directory `out`
    (`unlearning`: as for cir.unlearn_to_dir), then audit the result against the model as it was
    (cir.auditing.audit_rows: the probes, the attack grid, and the benchmark's never-taught and
    retain models where it has them, under the same attacks; their rows kept in the user cache).
    Writes demo.md, demo.json and the relearning attacks (attacks.json) into `out` and the audit's
    report and journal into `out/audit`; returns (table, {name: row} with the rest under
    "_extra", unlearning result). The model as it was is kept as a copy beside the one unlearned."""
    show = unlearning.get("progress", True)
    setting = settings.setting(model, tokenizer, progress=show)
    model = setting.model
    original = copy.deepcopy(model)  # A, which the audit reads "before" on and holds the text loss against
    # each kept topic in the comparison's three parts (cir.comparison): a quarter watched by the
    # collateral budget (unlearn_to_dir watches the even half of what it is given: of the even
    # half, WATCHED), another given to the method to keep, and the reported half the table
    # shows, which nothing reads before (unlearn_to_dir leaves out what restates a forget fact);
    # the attacker's kept facts come from the watched quarter
    watch = {name: items[0::2] for name, items in setting.topics.items()}
    protect = {name: items[PROTECTED] for name, items in setting.topics.items()}
    reported = watched_retain_sets(setting.forget, setting.topics, REPORTED)
    attacker_kept = watched_retain_sets(setting.forget, setting.topics, WATCHED)
    unlearning.setdefault("sources", {})["benchmark"] = settings.name
    if setting.general is not None:
        unlearning["sources"]["retain"] = "sampled from the model before teaching"
        unlearning["retain"], unlearning["heldout"] = setting.general
    # the attacks train on the general text's retain half (what the unlearning is given); the
    # loss ratio is read on the held-out half
    attack_text, heldout = setting.general if setting.general is not None else general_text_split(model, tokenizer)
    result = unlearn_to_dir(model, tokenizer, setting.forget, out, watch=watch, protect=protect, **unlearning)
    references = {"never_taught": setting.reference, "retain": setting.retain()}
    rows, extra = audit_rows(original, model, tokenizer, setting.forget, references=references, kept=reported,
                             attacker_kept=attacker_kept, texts=heldout, attack_text=attack_text,
                             nonmembers=setting.nonmembers or None,
                             settings=settings.audit,
                             out=Path(out) / "audit", progress=show, name=settings.name, cache=True)
    del original
    extra |= {"benchmark": settings.name, "notes": setting.notes,
              "unlearning": {"loss_ratio": result.kept["loss_ratio"], "seconds": result.seconds,
                             "stop_reason": result.stop_reason}}
    report = audit_json(rows, extra)
    write_audit(Path(out) / "audit", report, rows, extra)
    extra["verdict"] = report["verdict"]
    table = demo_table(settings, rows, result, extra)
    write_demo(Path(out), settings, rows, table, extra)
    for row in attack_rows(rows).values():
        if row.record is not None:
            record_attack(out, row.attack, row.record)
    return table, rows | {"_extra": extra}, result


def demo_table(settings: DemoSettings, rows: dict[str, Row], result: UnlearningResult, extra: dict | None = None) -> str:
    """demo.md's body: the main table (before, after unlearning, after the worst attack, and the
    references under the same), the grid's table with the residuals and the noise floor, and the
    notes; every headline with its 95% interval (demo_intervals)."""
    extra = extra or {}
    name = settings.name
    others = [t for t in rows["before"].sets if t != name]
    head = extra.get("headline") or {"worst_attack": None}
    worst = head["worst_attack"]
    found = extra.get("intervals") or {}
    prob, acc = found.get("probability", {}), found.get("accuracy", {})
    shown = ["before", "after unlearning"] + ([worst] if worst else [])
    header = (["", f"{name} V", "V, worst probe: P(correct)", "V, worst probe: accuracy", f"{name} (all)"] + others)

    def line(label: str, row: Row, key: str = "worst probe", stage: str | None = None) -> list[str]:
        stage = stage or label
        return ([label, f"{row.V.accuracy:.3f}", Interval.cell(prob.get(key, {}).get(stage)),
                 Interval.cell(acc.get(key, {}).get(stage)), f"{row.accuracy(name):.3f}"]
                + [f"{row.accuracy(t):.3f}" for t in others])

    table = [line(label if label != worst else "after the worst attack", rows[label], stage=label) for label in shown]
    names = {"never_taught": "never taught", "retain": "retain model"}
    for ref, title in names.items():
        if ref in extra:
            table += [line(f"{title}, {'the worst attack' if label == worst else label}", extra[ref][label],
                           f"{ref} worst probe", label)
                      for label in shown if label in extra[ref] and label != "after unlearning"]
    before, after = rows["before"], rows["after unlearning"]
    changes = {t: Interval.from_json(found["kept sets' change"][t]) for t in others} if found else {}
    lines = [markdown_table(header, table), ""]
    if worst:
        lines.append(f"- the worst attack: {worst} (the highest V in the worst probe of "
                     f"the {len(extra.get('attacks', ()))} attacks of grid '{settings.attacks}'; every attack below)")
    lines += [
        f"- V: the held-out part of `{name}` (its own subjects, {len(before.V.correct)} questions) that no attack "
        f"trains on (relearning reports the best epoch); chance is 0.25",
        "- V, worst probe: the highest reading on V over the held-out probes that ask every question (cloze, "
        "the questions' own rewordings, qa, the declarative stem, k-shot, recall: each choice's first token), none "
        "of which is in any training text, each also read the other way (the least likely choice as the answer); "
        "P(correct): the probability of the right choice, renormalised over the choices (the headline score); "
        "[95% interval]: a paired bootstrap over V's questions, the maximum over probes (and attacks) taken inside "
        "each replicate ([protocol.md](docs/protocol.md#intervals))",
    ]
    if changes:
        worst_set = min(changes, key=lambda t: changes[t].estimate)
        n = len(before.sets[worst_set].correct)
        lost = round(-changes[worst_set].estimate * n)
        lines.append(f"- the kept sets after unlearning (each set's reported half: neither watched by the collateral "
                     f"budget nor given to the method): the largest drop {worst_set}, "
                     f"{changes[worst_set].format(3, sign=True)} in accuracy ({lost} of {n} questions lost)"
                     + "".join(f"; {t} {changes[t].format(3, sign=True)}" for t in others if t != worst_set))
    else:
        drop = min((after.accuracy(t) - before.accuracy(t) for t in others), default=0.0)
        lines.append(f"- largest drop on another set after unlearning: {drop:+.3f}")
    lines += [
        f"- held-out general-text loss after unlearning: x{result.kept['loss_ratio']:.4f} of the original",
        f"- unlearning: {result.seconds:.0f} s for {result.n_facts} facts "
        f"({result.seconds_per_fact:.2f} s per fact); stopped by: {result.stop_reason}",
    ] + ([f"- measured on: {extra['machine']}"] if "machine" in extra else [])
    floors = {score: found[score].get("noise floor at the worst attack") for score in ("probability", "accuracy")
              if score in found}
    for ref, title in {"never_taught": "never-taught model", "retain": "retain model"}.items():
        key = f"residual vs {ref} at the worst attack"
        if key in prob:
            readings = []
            for score, block in (("P(correct)", prob), ("accuracy", acc)):
                residual = Interval.from_json(block[key])
                floor = floors.get("probability" if block is prob else "accuracy")
                readings.append(f"{score} {residual.signed(3)}, "
                                f"{verdict(residual, Interval.from_json(floor) if floor and ref == 'retain' else None)}")
            lines.append(f"- residual against the {title} at the worst attack (V's worst probe minus the {title}'s "
                         f"under the same attack; 0 = as the {title}): " + "; ".join(readings))
    if floors.get("probability"):
        lines.append(f"- the noise floor at the worst attack (the retain model minus the never-taught model, both of "
                     f"which never learned F, under the same attack): "
                     f"{Interval.from_json(floors['probability']).signed(3)} in P(correct), "
                     f"{Interval.from_json(floors['accuracy']).signed(3)} in accuracy")
    mia_rows = {k: v for k, v in extra.get("mia", {}).items() if v}
    if mia_rows:
        lines.append("- membership inference, F's sentences against never-taught people's (AUC, min-k% / zlib / "
                     "loss; 0.5 = indistinguishable): " + ", ".join(
                         f"{k} " + " / ".join(f"{v['auc'][m]:.3f}" for m in ("min_k", "zlib", "loss"))
                         for k, v in mia_rows.items()))
    if "privleak_muse" in extra:
        lines.append("- PrivLeak as MUSE reports it (100 x the change of 1 - AUC from the retain model's, over it; 0 = "
                     "as private as the retain model, below 0 still remembered, above 0 over-unlearned): " + ", ".join(
                         f"{m} {Interval.from_json(extra['privleak_muse'][m]).format(1, sign=True)}"
                         for m in ("min_k", "zlib", "loss")))
    if "privleak" in extra:
        lines.append("- PrivLeak, signed (AUC on the unlearned model minus the retain model's, over the retain "
                     "model's): " + ", ".join(f"{m} {extra['privleak'][m]:+.3f}" for m in ("min_k", "zlib", "loss")))
    if "forget quality" in found:
        quality = found["forget quality"]
        lines.append("- forget quality (TOFU: KS-test p-value of V's P(correct) in cloze against the retain model's "
                     "under the same attack; p >= 0.05: indistinguishable): "
                     + ", ".join(f"{label} {p:.3g}" for label, p in quality.items()))
    grid_rows = list(attack_rows(rows))
    if grid_rows:
        refs = [ref for ref in names if ref in extra]
        header = (["attack", "P(correct), worst probe: unlearned"] + [names[ref] for ref in refs]
                  + [f"residual vs {names[ref]}" for ref in refs]
                  + (["noise floor (retain - never taught)"] if len(refs) == 2 else [])
                  + ["accuracy, worst probe: unlearned"] + [f"residual vs {names[ref]} (accuracy)" for ref in refs])
        body = []
        for label in grid_rows:
            def cell(block: dict, key: str, sign: bool = False) -> str:
                return Interval.cell(block.get(key, {}).get(label), sign)

            mark = " (worst)" if label == worst else f" (not counted: {rows[label].broken})" if rows[label].broken else ""
            body.append([label + mark, cell(prob, "worst probe")]
                        + [cell(prob, f"{ref} worst probe") for ref in refs]
                        + [cell(prob, f"residual vs {ref}", True) for ref in refs]
                        + ([cell(prob, "noise floor", True)] if len(refs) == 2 else [])
                        + [cell(acc, "worst probe")] + [cell(acc, f"residual vs {ref}", True) for ref in refs])
        lines += ["", "Every attack of the grid (V in the worst probe, with its 95% interval; residual: the unlearned "
                  "model's minus the reference's under the same attack):", "", markdown_table(header, body)]
    return "\n".join(lines)


def write_demo(out: Path, settings: DemoSettings, rows: dict[str, Row], table: str, extra: dict | None = None) -> None:
    """demo.md (the tables) and demo.json: every row by name, the references' rows, and the rest."""
    extra = dict(extra or {})
    for ref in ("never_taught", "retain"):
        if ref in extra:
            extra[ref] = {name: row.to_json() for name, row in extra[ref].items()}
    settings_json = {key: value for key, value in settings.__dict__.items() if key != "audit"}
    (out / "demo.md").write_text(f"# Demo: forgetting `{settings.name}`\n\n{table}\n")
    write_json(out / "demo.json", {"settings": settings_json, "rows": {name: row.to_json() for name, row in rows.items()}}
               | extra)


def read_demo(path: str | Path) -> tuple[dict[str, Row], dict]:
    """demo.json's rows back as Rows, and the rest (the references' rows as Rows too)."""
    import json

    data = json.loads(Path(path).read_text())
    rows = {name: Row.from_json(row) for name, row in data.pop("rows").items()}
    for ref in ("never_taught", "retain"):
        if ref in data:
            data[ref] = {name: Row.from_json(row) for name, row in data[ref].items()}
    return rows, data
