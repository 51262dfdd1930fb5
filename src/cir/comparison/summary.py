"""A comparison's statistics: a trial's value per budget, each budget's best trial (and its tie
rule), and the mean and 95% interval over the seeds."""

from __future__ import annotations

import math
import statistics

from cir.evaluation.protocol import RESIDUALS
from cir.evaluation.rows import Row

# what a run's statistics read, by name: (the row it is read from, its score); a run's rows are
# "after unlearning", and the suite's attacks by kind ("relearn", "quantize")
READINGS = {"V_after_unlearning": ("after unlearning", "V"), "V_worst_after_unlearning": ("after unlearning", "V_worst"),
            "V_after_relearning": ("relearn", "V"), "V_worst_after_relearning": ("relearn", "V_worst"),
            "V_after_quantisation": ("quantize", "V"), "V_worst_after_quantisation": ("quantize", "V_worst")}
STAGES = tuple(READINGS)
CELL_FIELDS = ("kept_epoch", "loss_ratio", "collateral", "seconds_per_fact")


def cell_rows(cell: dict) -> dict[str, Row]:
    """A measured cell's rows by name (the suite's by kind, the grid's by label)."""
    return {name: Row.from_json(row) for name, row in cell.get("rows", {}).items()}


def readings(cell: dict) -> dict:
    """A cell's readings by name (READINGS, each kept set's accuracy after unlearning under "topics",
    the grid's V worst per attack and its worst attack), read from its rows; a cell journalled
    before cells held rows already holds them by name."""
    if "rows" not in cell:
        return cell
    rows = cell_rows(cell)
    out = {name: getattr(rows[row], score).accuracy for name, (row, score) in READINGS.items() if row in rows}
    out["topics"] = {name: score.accuracy for name, score in rows["after unlearning"].sets.items()}
    out |= {key: cell[key] for key in CELL_FIELDS if key in cell}
    if cell.get("grid") is not None:
        grid = {label: rows[label].V_worst.accuracy for label in cell["grid_attacks"]}
        worst = cell["worst_attack"]  # None where every attack broke the model
        out |= {"grid": cell["grid"], "grid_V_worst": grid, "worst_attack": worst,
                "V_worst_after_worst_attack": float("nan") if worst is None else grid[worst]}
    return out


def before_readings(record: dict) -> dict:
    """A "before" record's V, V worst and reported topics by name (read from its row where it has one)."""
    if "row" not in record:
        return record
    row = Row.from_json(record["row"])
    return {"V_before": row.V.accuracy, "V_worst_before": row.V_worst.accuracy,
            "topics": {name: score.accuracy for name, score in row.sets.items()}}


def interval_summary(per_seed: list[tuple[dict[str, Row], dict[str, Row] | None]]) -> dict:
    """A budget's 95% intervals over its seeds (cir.evaluation.intervals: V's questions resampled
    within each seed, seeds as strata), in each score: V in the worst probe after unlearning,
    after relearning and after 4-bit, and where there is a never-taught model the residual under
    each attack. {} for runs journalled before cells held rows."""
    from cir.evaluation import intervals

    if not per_seed or any(not rows for rows, _ in per_seed):
        return {}
    stages = {"after unlearning": "V_worst_after_unlearning", "relearn": "V_worst_after_relearning",
              "quantize": "V_worst_after_quantisation"}
    out = {}
    for score in intervals.SCORES:
        block = {}
        for row, name in stages.items():
            if all(row in rows for rows, _ in per_seed):
                block[name] = intervals.worst([rows[row] for rows, _ in per_seed], score).to_json()
                if row != "after unlearning" and all(never and row in never for _, never in per_seed):
                    block[f"residual_{name}"] = intervals.residual([rows[row] for rows, _ in per_seed],
                                                                   [never[row] for _, never in per_seed],
                                                                   score).to_json()
        out[score] = block
    return out


def objectives(trial: dict, n: int) -> list[float]:
    """A trial's value at each budget: V in the worst held-out probe after relearning."""
    return [readings(trial["budgets"][str(i)])["V_worst_after_relearning"] for i in range(n)]


# ---------------------------------------------------------------- statistics and output
def best_trial(trials: list[dict], index: int) -> dict:
    """Budget `index`'s best trial: the lowest V in the worst probe after relearning; of a tie, the
    larger drop before the attack (the lower V in the worst probe after unlearning: what the
    method can forget, within the budget), then the lower cloze V after relearning, then the
    first trial."""
    def key(trial: dict) -> tuple:
        cell = readings(trial["budgets"][str(index)])
        return (cell["V_worst_after_relearning"], cell["V_worst_after_unlearning"], cell["V_after_relearning"],
                trial["number"])

    return min(trials, key=key)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t confidence interval); the half-width is nan for one value."""
    from scipy.stats import t

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


SUMMARY_KEYS = ("V_before", "V_worst_before") + STAGES + ("loss_ratio", "collateral", "seconds_per_fact")


def summarise(runs: list[dict]) -> dict:
    """Mean and 95% interval over the seeds of every measurement, the drop that survives relearning
    in the worst probe, and the worst reported topic's change."""
    out = {key: mean_ci([r[key] for r in runs]) for key in SUMMARY_KEYS}
    out["drop"] = mean_ci([r["V_worst_before"] - r["V_worst_after_relearning"] for r in runs])
    out["drop_before_attack"] = mean_ci([r["V_worst_before"] - r["V_worst_after_unlearning"] for r in runs])
    out["topics_worst_change"] = mean_ci([min(r["topics_change"].values(), default=0.0) for r in runs])
    out["topics_change"] = {t: mean_ci([r["topics_change"][t] for r in runs]) for t in runs[0]["topics_change"]}
    for key in RESIDUALS + ("V_worst_after_worst_attack",):
        if f"residual_{key}" in runs[0]:
            out[f"residual_{key}"] = mean_ci([r[f"residual_{key}"] for r in runs])
    if "V_worst_after_worst_attack" in runs[0]:  # the runs met a grid: its worst attack, per seed
        out["V_worst_after_worst_attack"] = mean_ci([r["V_worst_after_worst_attack"] for r in runs])
        out["worst_attacks"] = sorted({r["worst_attack"] for r in runs})
    return out
