"""The audit: a verdict, with intervals, on an unlearned model, and the measurements it shares with
the demo (cir.demo: make a benchmark, unlearn, then these).

Given the original model A, the unlearned model B and the forget set F (and, where the user has
one, a reference model R that never learned F): F is split into T and V by subject; the probe
battery reads V on A, B and R; a grid of attacks (cir.attacks.grids) meets B and R, each on its
own copy; kept sets' changes, the text-loss ratio and KL against A, membership inference and,
with R, PrivLeak and forget quality. Every headline carries its 95% interval
(cir.evaluation.intervals), and the verdict comes first: the worst attack, what it brings back
(V after it, its share of A's, the residual against R), whether that reads "as never learned"
at this size, and what it cost the kept sets.
"""

from __future__ import annotations

from cir.attacks.grids import ReferenceRows, run_grid, worst_attack
from cir.evaluation import intervals
from cir.evaluation.protocol import measure, residual
from cir.evaluation.rows import Row
from cir.evaluation.statistics import Interval, forget_quality


def attacked(model, tokenizer, topics: dict, data: dict, held_out: list, attacks: tuple, seed: int, show: bool,
             cache: bool = False, journal=None) -> dict[str, Row]:
    """The grid's rows (each attack on its own copy), by the attack's label; `cache`: the model is
    a reference, its rows kept for later runs on the same split (cir.attacks.grids.ReferenceRows);
    `journal`: rows kept in a run directory's journal instead, so an interrupted run continues."""
    rows_cache = ReferenceRows(model, data, held_out, topics, seed) if cache else journal
    return run_grid(model, tokenizer, attacks, data, held_out, topics=topics, seed=seed, progress=show, cache=rows_cache)


def reference_rows(model, tokenizer, topics: dict, data: dict, held_out: list, attacks: tuple, seed: int,
                   show: bool) -> dict[str, Row]:
    """A reference model (never taught, or the retain model) measured and attacked as the unlearned one."""
    rows = {"before": measure(model, tokenizer, topics, held_out)}
    rows |= attacked(model, tokenizer, topics, data, held_out, attacks, seed, show, cache=True)
    for row in rows.values():
        row.record = None
    return rows


def residuals(rows: dict[str, Row], reference: dict[str, Row]) -> dict[str, dict]:
    """Per row, V and V worst minus the reference model's under the same attack (0: as the
    reference); the unlearned model is held against the reference unattacked."""
    against = {"after unlearning": "before"}  # otherwise a row meets the reference's row of its name
    paired = {name: against.get(name, name) for name in rows}
    return {name: residual(rows[name], reference[ref]) for name, ref in paired.items() if ref in reference}


def attack_rows(rows: dict[str, Row]) -> dict[str, Row]:
    return {name: row for name, row in rows.items() if row.stage == "attack"}


def headline(rows: dict[str, Row], extra: dict) -> dict:
    """The worst attack (highest V in the worst probe on the unlearned model), its residual against
    each reference, and the largest residual of the grid against each."""
    attacks = attack_rows(rows)
    worst = worst_attack(attacks)
    found = {"worst_attack": worst, "V worst": None if worst is None else rows[worst].V_worst.accuracy}
    for ref in ("never_taught", "retain"):
        if ref in extra and worst is not None:
            residual = {name: r for name, r in extra[f"residual_{ref}"].items() if name in attacks}
            largest = max(residual, key=lambda name: residual[name]["V worst"])
            found[ref] = {"residual at the worst attack": residual[worst]["V worst"],
                          "largest residual": residual[largest]["V worst"], "largest at": largest}
    return found


def headline_intervals(name: str, rows: dict[str, Row], extra: dict) -> dict:
    """Every headline's 95% interval (cir.evaluation.intervals), in each score: V in the worst probe
    of each row and each reference's; each row's residual against each reference under the same
    attack; at the worst attack of the grid (chosen again in every replicate) the residual and
    the noise floor (the retain model minus the never-taught model); each kept set's change after
    unlearning; TOFU's forget quality (KS test of V's probabilities in cloze against the retain
    model's) after unlearning and after each attack. JSON: [estimate, low, high]."""
    refs = [ref for ref in ("never_taught", "retain") if ref in extra]
    attacks = list(attack_rows(rows))
    against = {"after unlearning": "before"}
    found = {}
    for score in intervals.SCORES:
        block = {"worst probe": {label: intervals.worst([row], score).to_json() for label, row in rows.items()}}
        for ref in refs:
            block[f"{ref} worst probe"] = {label: intervals.worst([row], score).to_json()
                                           for label, row in extra[ref].items()}
            block[f"residual vs {ref}"] = {label: intervals.residual([row], [extra[ref][against.get(label, label)]],
                                                                     score).to_json()
                                           for label, row in rows.items() if against.get(label, label) in extra[ref]}
            if attacks:
                block[f"residual vs {ref} at the worst attack"] = intervals.worst_attack_residual(
                    [[rows[a] for a in attacks]], [[extra[ref][a] for a in attacks]], score).to_json()
        if len(refs) == 2:
            block["noise floor"] = {label: intervals.residual([extra["retain"][label]], [extra["never_taught"][label]],
                                                              score).to_json()
                                    for label in ["before"] + attacks}
            if attacks:
                block["noise floor at the worst attack"] = intervals.noise_floor(
                    [[extra["retain"][a] for a in attacks]], [[extra["never_taught"][a] for a in attacks]],
                    [[rows[a] for a in attacks]], score).to_json()
        found[score] = block
    before, after = rows["before"], rows["after unlearning"]
    found["kept sets' change"] = {fact_set: intervals.change([after], [before], fact_set).to_json()
                                  for fact_set in before.sets if fact_set != name}
    if "retain" in extra:
        found["forget quality"] = {label: forget_quality(intervals.values(row.V, "probability"),
                                                         intervals.values(extra["retain"][against.get(label, label)].V,
                                                                          "probability"))
                                   for label, row in rows.items() if label != "before"}
    return found


def interval_cell(data: list | None, sign: bool = False) -> str:
    return "-" if data is None else Interval.from_json(data).format(3 if not sign else 2, sign)


def verdict(residual: Interval, floor: Interval | None = None) -> str:
    """What a residual says at this size: a reading only where its interval excludes 0 and its
    estimate lies outside the noise floor."""
    if residual.low <= 0 <= residual.high:
        return "undecided at this size (the interval holds 0)"
    if floor is not None and floor.low <= residual.estimate <= floor.high:
        return "undecided at this size (inside the noise floor)"
    if residual.low > 0:
        return "above the reference: some of the knowledge comes back"
    return "below the reference: answers pushed under a stranger's level (an anti-memory, which a membership test reads)"
