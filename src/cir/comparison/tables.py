"""A comparison's tables, reading and plot: compare.md, compare.json and frontier.png."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from cir.comparison.settings import GRID
from cir.comparison.summary import readings
from cir.tables import markdown_table


def _cell(value, digits: int = 3, sign: bool = False) -> str:
    mean, half = value
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if math.isnan(half) else f"{text} ± {half:.{digits}f}"


def _fixed(value: float | None, digits: int) -> str:
    """A number as the tables show it; None (a NaN, as a journal read back gives it) as nan."""
    return "nan" if value is None else f"{value:.{digits}f}"


def budget_table(result: dict, index: int) -> str:
    """One budget's table: a row per method, its columns named (those of the never-taught
    residuals and of the grid only where the comparison has them)."""
    residual = result.get("never_taught") is not None
    grid = result["settings"].get("grid")
    bits = result["settings"]["attacks"]["quantize_bits"]
    columns = [  # (header, the cell from the summary s and the budget's entry)
        ("method", None),
        ("V before", lambda s, cell: _cell(s["V_before"])),
        ("V after unlearning", lambda s, cell: _cell(s["V_after_unlearning"])),
        ("V after relearning", lambda s, cell: _cell(s["V_after_relearning"])),
        (f"V after {bits}-bit", lambda s, cell: _cell(s["V_after_quantisation"])),
        ("V worst probe after relearning", lambda s, cell: _cell(s["V_worst_after_relearning"])),
    ]
    if any(entry["budgets"][index]["summary"].get("intervals") for entry in result["methods"].values()):
        # the runs' rows: V's worst probe after relearning in P(correct) with its interval over
        # the questions of every seed (and the residual against the never-taught model beside the drop)
        columns.append(("P(correct), worst probe after relearning [95%]",
                        lambda s, cell: _interval_of(s, "probability", "V_worst_after_relearning")))
    if grid is not None:  # the runs also met a grid: V worst after its worst attack (per seed)
        columns.append((f"V worst probe after the worst attack of grid '{grid}'",
                        lambda s, cell: _cell(s["V_worst_after_worst_attack"])))
    columns += [
        ("drop before the attack (worst probe)",
         lambda s, cell: _cell(s.get("drop_before_attack", (math.nan, math.nan)), sign=True)),
        ("drop (worst probe)", lambda s, cell: _cell(s["drop"], sign=True)),
    ]
    if residual and any(entry["budgets"][index]["summary"].get("intervals") for entry in result["methods"].values()):
        columns.append(("residual after relearning, P(correct) [95%]",
                        lambda s, cell: _interval_of(s, "probability", "residual_V_worst_after_relearning", True)))
    if residual:  # beside the drop: what is left above the never-taught model under each attack
        columns += [("residual, worst probe after relearning",
                     lambda s, cell: _cell(s["residual_V_worst_after_relearning"], sign=True)),
                    ("residual, worst probe after 4-bit",
                     lambda s, cell: _cell(s["residual_V_worst_after_quantisation"], sign=True))]
        if grid is not None:
            columns.append(("residual, worst probe after the worst attack",
                            lambda s, cell: _cell(s["residual_V_worst_after_worst_attack"], sign=True)))
    columns += [
        ("other topics, worst Δ", lambda s, cell: _cell(s["topics_worst_change"], sign=True)),
        ("loss ratio", lambda s, cell: _cell(s["loss_ratio"], 4)),
        ("collateral (watched)", lambda s, cell: _cell(s["collateral"])),
        ("s / fact", lambda s, cell: _cell(s["seconds_per_fact"], 2)),
        ("setting (trial)", lambda s, cell: " ".join(f"`{o}`" for o in cell["best"])
         + f" ({cell['best_trial'] + 1})" + _unlearned(cell)),
    ]
    rows = []
    for name, entry in result["methods"].items():
        cell = entry["budgets"][index]
        rows.append([name] + [read(cell["summary"], cell) for _, read in columns[1:]])
    return markdown_table([header for header, _ in columns], rows)


def _interval_of(summary: dict, score: str, name: str, sign: bool = False) -> str:
    """A summary's interval as the tables show it: `0.44 [0.28, 0.61]`; "-" where the runs have none."""
    from cir.evaluation.statistics import Interval

    return Interval.cell(summary.get("intervals", {}).get(score, {}).get(name), sign)


def _unlearned(cell: dict) -> str:
    """The mark of a cell whose runs kept the original weights on some seeds (epoch 1 already
    passed the budget): nothing was unlearned there."""
    kept_original = sum(run["kept_epoch"] == 0 for run in cell["runs"])
    return f"; **nothing unlearned** on {kept_original} of {len(cell['runs'])} seeds (kept epoch 0)" if kept_original else ""


def reading(result: dict, index: int) -> str:
    """CIR's drop in the worst probe after relearning against the best baseline's, at one budget."""
    drops = {m: e["budgets"][index]["summary"]["drop"][0] for m, e in result["methods"].items()}
    if "cir" not in drops or len(drops) < 2:
        return ""
    best, value = max(((m, v) for m, v in drops.items() if m != "cir"), key=lambda mv: mv[1])
    if drops["cir"] <= 0:
        verdict = "CIR keeps no drop"
    elif value <= 0:
        verdict = "no baseline keeps a drop, so the ratio is unbounded (read CIR's own drop and its interval)"
    else:
        ratio = drops["cir"] / value
        verdict = f"CIR / best baseline = {ratio:.1f}x ({'at least' if ratio >= 5 else 'less than'} 5x)"
    return (f"Drop that survives relearning, in the worst probe (mean over seeds): CIR {drops['cir']:+.3f}, "
            f"best baseline {best} {value:+.3f}; {verdict}.")


def asymmetric(result: dict) -> str:
    """The CIR paper's setting: CIR at the smallest budget, every baseline at the largest."""
    settings = result["settings"]
    if "cir" not in result["methods"] or len(result["methods"]) < 2 or len(settings["budgets"]) < 2:
        return ""
    header = ["method", "budget", "V worst probe after relearning", "drop (worst probe)", "other topics, worst Δ",
              "loss ratio"]
    rows = []
    for name, entry in result["methods"].items():
        index = 0 if name == "cir" else len(settings["budgets"]) - 1
        s = entry["budgets"][index]["summary"]
        rows.append([name, f"{100 * settings['budgets'][index]:g}%", _cell(s["V_worst_after_relearning"]),
                     _cell(s["drop"], sign=True), _cell(s["topics_worst_change"], sign=True), _cell(s["loss_ratio"], 4)])
    return markdown_table(header, rows)


def unreached(result: dict) -> str:
    """The methods whose search never met a budget: every trial kept its last epoch at every
    budget, so nothing shows where the method's step would start to cost what a budget allows,
    and its cells may understate it."""
    notes = []
    for name, entry in result["methods"].items():
        trials = entry["trials"]
        if trials and all(c["kept_epoch"] == len(t["epochs"]) - 1 for t in trials for c in t["budgets"].values()):
            worst = max((e["loss_ratio"] for t in trials for e in t["epochs"][1:] if e["loss_ratio"] is not None),
                        default=float("nan"))
            steps = sorted(t["params"].get("unlearning_rate", float("nan")) for t in trials)
            notes.append(f"- {name}: every trial (steps {steps[0]:.4g}-{steps[-1]:.4g}) kept its last epoch at every "
                         f"budget, the text loss at most x{worst:.4f}; a wider range finds where it starts to cost "
                         "(`python bench/wider_search.py`)")
    if not notes:
        return ""
    return "\n".join(["The search did not reach these methods' budgets, so their cells may understate them:", ""]
                     + notes)


def trials_table(result: dict) -> str:
    """Every search trial (seed 0's split): its setting, each epoch's disruption, why it stopped,
    and per budget the epoch kept and V in the worst probe after relearning."""
    budgets = result["settings"]["budgets"]
    header = ["method", "trial", "setting", "epochs: loss ratio / collateral", "stopped by"]
    header += [f"{100 * b:g}%: kept epoch, V worst after relearning" for b in budgets]
    rows = []
    for name, entry in result["methods"].items():
        for trial in entry["trials"]:
            epochs = ", ".join(f"{_fixed(e['loss_ratio'], 4)} / {_fixed(e['collateral'], 3)}"
                               for e in trial["epochs"][1:])
            cells = [trial["budgets"][str(i)] for i in range(len(budgets))]
            rows.append([name, str(trial["number"] + 1), " ".join(f"`{o}`" for o in trial["overrides"]),
                         epochs or "none", trial["stop_reason"]]
                        + [f"{c['kept_epoch']}, {readings(c)['V_worst_after_relearning']:.3f}" for c in cells])
    return markdown_table(header, rows)


def markdown(result: dict) -> str:
    settings = result["settings"]
    lines = []
    for index in range(len(settings["budgets"])):
        lines += [f"### Budget: {100 * settings['budgets'][index]:g}% text loss, collateral "
                  f"{settings['collateral'][index]:g}", "", budget_table(result, index), ""]
        if text := reading(result, index):
            lines += [text, ""]
    if table := asymmetric(result):
        lines += [f"### The paper's asymmetric setting: CIR at {100 * settings['budgets'][0]:g}%, the baselines at "
                  f"{100 * settings['budgets'][-1]:g}%", "", table, ""]
    attacks = settings["attacks"]
    before = result["before"]
    lines += [
        f"- {result['n_facts']} forget questions, all unlearned; V = {result['V_size']} held-out questions that the "
        f"relearning attack (Adam, lr {attacks['relearn_lr']}, {attacks['relearn_epochs']} epochs on the MLPs, "
        f"trained on T) never sees; its best epoch is reported; chance is {result['chance']:.2f}. The worst probe is "
        "the highest accuracy on V over the held-out probes (never in a training text), each also read the other "
        "way (the least likely choice as the answer).",
        f"- a budget: held-out general-text loss ratio <= 1 + B, and the watched part of the other topics "
        f"({', '.join(f'{t} {n}' for t, n in result['watched'].items())} questions) losing at most the collateral "
        f"budget; the weights of the last epoch within it are kept, at most {settings['max_epochs']} epochs",
        "- facts to keep given to the methods (CIR's retain-aware collapse): "
        + ("the watched part itself" if not result.get("protected") else
           "another part of the other topics, apart from the watched and the reported ("
           + ", ".join(f"{t} {n}" for t, n in result["protected"].items()) + " questions)"),
        f"- search: {settings['trials']} optuna trials (TPE, seeded {settings['seed']}; one objective per budget) per "
        f"method over its step size (CIR also over its forget loss), the first {min(settings['trials'], GRID)} spread "
        f"evenly over its range (log scale, default loss), then the sampler's; each measured on seed 0's split; each budget's best setting (trial number in brackets) then runs on seeds "
        f"1-{settings['seeds']}, each a new T/V split: the table holds only those (mean ± 95% t-interval when more "
        "than one)",
        "- other topics: the change of the reported half (neither watched nor given to a method), after "
        "unlearning; the worst topic's (before: "
        + ", ".join(f"{t} {statistics.fmean(b['topics'][t] for b in before):.3f}" for t in before[0]["topics"]) + ")",
        "", "### Every search trial (seed 0's split)", "", trials_table(result),
    ]
    if text := unreached(result):
        lines += ["", text]
    return "\n".join(lines)


def plot(result: dict, out: Path) -> list[str]:
    """frontier.png: per method, V in the worst probe after relearning against the text loss rise
    and against the other topics' worst change, one point per budget."""
    from cir.report import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = (("loss_ratio", "held-out text loss rise (%)", lambda v: 100 * (v - 1)),
              ("topics_worst_change", "other topics: worst change in accuracy", lambda v: v))
    for ax, (key, label, scale) in zip(axes, panels):
        for name, entry in result["methods"].items():
            cells = [cell["summary"] for cell in entry["budgets"]]
            x = [scale(s[key][0]) for s in cells]
            y = [s["V_worst_after_relearning"][0] for s in cells]
            errors = [0 if math.isnan(s["V_worst_after_relearning"][1]) else s["V_worst_after_relearning"][1]
                      for s in cells]
            ax.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=name)
        ax.axhline(result["chance"], color="grey", linestyle=":", label="chance")
        ax.set_xlabel(label)
    axes[0].set_ylabel("V, worst probe, after relearning")
    axes[0].set_ylim(0, 1.05)
    axes[1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, out / "frontier.png", dpi=120)
    return ["frontier.png"]


def write(result: dict, out: Path, command: str) -> None:
    from cir.outputs import write_file, write_json

    write_json(out / "compare.json", result | {"command": command})
    plots = plot(result, out)
    text = ["# Methods compared at every budget", "", "```", command, "```", "", markdown(result), ""]
    text += [f"![{p}]({p})" for p in plots]
    write_file(out / "compare.md", "\n".join(text) + "\n")
