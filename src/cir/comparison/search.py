"""The comparison itself: per method, the seeded search on seed 0's split, then each budget's best
setting on seeds 1..K."""

from __future__ import annotations

import dataclasses
import statistics
import time

from tqdm.auto import tqdm

from cir.attacks.grids import attack_texts, grid, run_grid, suite, worst_attack
from cir.comparison.journal import Journal, _Memory
from cir.comparison.settings import CompareSettings, Evaluation, GRID, as_overrides, distributions, grid_trial, options_of
from cir.comparison.summary import (before_readings, best_trial, cell_rows, interval_summary, objectives, readings,
                                   summarise)
from cir.unlearning.loop import run_unlearning
from cir.models import restore, snapshot
from cir.evaluation.protocol import kept_for_attack, measure, residual_of
from cir.unlearning.run_config import make_configs


# ---------------------------------------------------------------- the comparison


class Comparison:
    def __init__(self, model, tokenizer, evaluation: Evaluation, settings: CompareSettings, progress: bool = True,
                 journal: Journal | None = None, never_taught=None):
        self.base, self.tokenizer, self.evaluation = model, tokenizer, evaluation
        self.settings = settings = settings.for_watched(evaluation.watched)
        self.never_taught = never_taught  # the model before the forget set was taught, where there is one
        self.original = snapshot(model.state_dict())
        self.progress = progress
        self.journal = journal if journal is not None else _Memory()
        self.splits = {k: settings.attack_config(k).split(evaluation.items) for k in range(settings.seeds + 1)}
        self._original_rows: dict[tuple[int, bool], dict] = {}
        self._reference: dict | None = None

    def reference(self) -> dict:
        """The original model's held-out text loss and watched accuracies, measured once for all runs."""
        if self._reference is None:
            from cir.evaluation.scoring import text_loss
            from cir.evaluation.budgets import Collateral
            from cir.models import in_float32

            model = self._fresh()
            with in_float32(model):  # as the loop measures (RunConfig.measure_float32)
                self._reference = {"text_loss": text_loss(model, self.tokenizer, self.evaluation.heldout_texts),
                                   "retain_accuracy": Collateral(model, self.tokenizer, self.evaluation.watched).original}
        return self._reference

    def _fresh(self):
        self.base.load_state_dict(self.original)
        return self.base

    # ------------------------------------------------------------ measurements
    def before(self, seed: int) -> dict:
        """The original model on seed `seed`'s V, and the reported topics (journalled once)."""
        found = self.journal.find(kind="before", seed=seed)
        if found is None:
            model = self._fresh()
            held_out = self.splits[seed][1]
            found = {"kind": "before", "seed": seed,
                     "row": measure(model, self.tokenizer, self.evaluation.reported, held_out).to_json()}
            self.journal.add(found)
        return before_readings(found)

    def measure(self, model, seed: int, quantize: bool) -> dict:
        """The current weights on seed `seed`'s split, as a cell of rows: "after unlearning" (V,
        every probe, the reported topics) and the suite's attacks by kind (relearning; with
        `quantize` also 4-bit), and with a grid its attacks by label and the worst of them."""
        train, held_out = self.splits[seed]
        rows = {"after unlearning": measure(model, self.tokenizer, self.evaluation.reported, held_out,
                                           stage="after unlearning")}
        attacks = ("relearn", "quantize") if quantize else ("relearn",)
        rows |= suite(model, self.tokenizer, train, held_out, config=self.settings.attack_config(seed), attacks=attacks)
        cell = {}
        if quantize and self.settings.grid is not None:
            grid_rows = self.grid_rows(model, seed, done=[rows[kind] for kind in attacks])
            rows |= grid_rows
            cell = {"grid": self.settings.grid, "grid_attacks": list(grid_rows), "worst_attack": worst_attack(grid_rows)}
        for row in rows.values():
            row.record = None  # a relearning's per-epoch record: the run's attacks.json holds those, not the journal
        return {"rows": {name: row.to_json() for name, row in rows.items()}} | cell

    def grid_rows(self, model, seed: int, done=()) -> dict:
        """Every attack of the settings' grid on seed `seed`'s split, by label. `done`: rows of
        attacks already run on these weights and this split (the suite's), which the grid reads
        instead of running them again."""
        train, held_out = self.splits[seed]
        data = attack_texts(train, kept_for_attack(self.evaluation.watched), self.evaluation.retain_texts, seed)
        attacks = grid(self.settings.grid)
        known = {row.attack: row for row in done}
        rows = run_grid(model, self.tokenizer, tuple(a for a in attacks if a.key not in known), data, held_out,
                        topics={}, seed=seed)
        return {attack.label: rows.get(attack.label) or known[attack.key] for attack in attacks}

    def original_row(self, seed: int, quantize: bool) -> dict:
        """`measure` of the original weights (what a budget keeps when no epoch fits in it): the
        same for every method, so measured once per seed."""
        key = (seed, quantize)
        if key not in self._original_rows:
            found = self.journal.find(kind="original", seed=seed, quantize=quantize)
            if found is None:
                found = {"kind": "original", "seed": seed, "quantize": quantize,
                         "row": self.measure(self._fresh(), seed, quantize)}
                self.journal.add(found)
            self._original_rows[key] = found["row"]
        return self._original_rows[key]

    def never_taught_cell(self, seed: int) -> dict | None:
        """`measure` of the never-taught model on seed `seed`'s split, both attacks (journalled
        once per seed): what "never learned" gives under the same attacks."""
        if self.never_taught is None:
            return None
        found = self.journal.find(kind="never_taught", seed=seed)
        if found is None:
            found = {"kind": "never_taught", "seed": seed, "row": self.measure(self.never_taught, seed, True)}
            self.journal.add(found)
        return found["row"]

    def never_taught_row(self, seed: int) -> dict | None:
        """The never-taught model's readings on seed `seed`'s split, by name."""
        cell = self.never_taught_cell(seed)
        return None if cell is None else readings(cell)

    # ------------------------------------------------------------ one trajectory
    def trajectory(self, method: str, options: dict, seed: int, budgets: list[int], quantize: bool) -> dict:
        """Unlearn with `method` from the original weights on seed `seed` until the largest budget is
        passed; then, for each budget of `budgets`, the weights it keeps (the last epoch before its
        first violation) measured by `measure`, each distinct epoch once."""
        s = self.settings
        shared = {"max_epochs": s.max_epochs, "budget": 1 + max(s.budgets), "collateral_budget": max(s.collateral),
                  "disruption": "loss_ratio", "eval_forget": False, "seed": seed}
        run, method_config = make_configs(method, options=s.options_for(method) | shared | options)
        reference = self.reference()
        model = self._fresh()
        alive, kept, saved = set(range(len(s.budgets))), {i: 0 for i in range(len(s.budgets))}, {}
        trained = {}

        def on_epoch(epoch: int, row: dict, params: dict) -> None:
            trained.update(params)
            for i in sorted(alive):
                if s.within(row, i):
                    kept[i] = epoch
                else:
                    alive.discard(i)
            wanted = {kept[i] for i in budgets}
            if epoch in wanted and epoch:
                saved[epoch] = snapshot(params)
            for old in set(saved) - wanted:
                del saved[old]

        result = run_unlearning(model, self.tokenizer, self.evaluation.items, self.evaluation.retain_texts,
                                self.evaluation.heldout_texts, run, method_config, progress=False,
                                retain_sets=self.evaluation.watched, protect_sets=self.evaluation.protected,
                                on_epoch=on_epoch, reference=reference)
        setup = result.seconds - sum(m["seconds"] for m in result.metrics[1:])
        measured, rows = {}, {}
        for i in budgets:
            epoch = kept[i]
            if epoch not in measured:
                if epoch == 0:
                    measured[0] = self.original_row(seed, quantize)
                else:
                    model = self._fresh()
                    restore(trained, saved[epoch])
                    measured[epoch] = self.measure(model, seed, quantize)
            metrics = result.metrics[epoch]
            seconds = setup + sum(m["seconds"] for m in result.metrics[1:epoch + 1])
            rows[str(i)] = {"kept_epoch": epoch, "loss_ratio": metrics["loss_ratio"],
                            "collateral": metrics.get("collateral", 0.0),
                            "seconds_per_fact": seconds / len(self.evaluation.items)} | measured[epoch]
        self._fresh()
        epochs = [{"loss_ratio": m["loss_ratio"], "collateral": m.get("collateral", 0.0)} for m in result.metrics]
        return {"stop_reason": result.stop_reason, "epochs": epochs, "budgets": rows}

    # ------------------------------------------------------------ the search and the seeds
    def search(self, method: str, bar) -> list[dict]:
        """The method's trials on seed 0's split, each measured at every budget (journalled)."""
        import optuna

        s = self.settings
        space = distributions(method)
        study = optuna.create_study(directions=["minimize"] * len(s.budgets))
        trials = []
        for number in range(s.trials):
            found = self.journal.find(kind="trial", method=method, number=number)
            if found is None:
                if number < GRID:
                    study.enqueue_trial(grid_trial(method, number, s.trials))
                # a sampler seeded per trial: a resumed search draws what an uninterrupted one would
                study.sampler = optuna.samplers.TPESampler(seed=s.seed * 1_000_003 + number)
                trial = study.ask(space)
                bar.set_postfix_str(f"{method}: trial {number + 1}/{s.trials}")
                options = options_of(trial.params)
                start = time.perf_counter()
                found = {"kind": "trial", "method": method, "number": number, "params": trial.params,
                         "options": options, "overrides": as_overrides(options)}
                found |= self.trajectory(method, options, 0, list(range(len(s.budgets))), quantize=False)
                found["seconds"] = time.perf_counter() - start
                study.tell(trial, objectives(found, len(s.budgets)))
                self.journal.add(found)
            else:
                study.add_trial(optuna.trial.create_trial(params=found["params"], distributions=space,
                                                          values=objectives(found, len(s.budgets))))
            trials.append(found)
            bar.update(1)
        return trials

    def finals(self, method: str, best: dict[int, dict], bar) -> tuple[dict[int, list[dict]], dict[int, list]]:
        """Each budget's best setting on seeds 1..K: one run per setting and seed, serving every
        budget that chose it (journalled). ({budget: [readings per seed]}, {budget: [(the run's rows,
        the never-taught model's rows) per seed]}: what the intervals resample)"""
        by_trial: dict[int, list[int]] = {}
        for i, trial in best.items():
            by_trial.setdefault(trial["number"], []).append(i)
        runs, rows = {i: [] for i in best}, {i: [] for i in best}
        for number, budgets in by_trial.items():
            options = best[budgets[0]]["options"]
            for seed in range(1, self.settings.seeds + 1):
                found = self.journal.find(kind="final", method=method, number=number, seed=seed)
                if found is None:
                    bar.set_postfix_str(f"{method}: setting of trial {number + 1}, seed {seed}")
                    start = time.perf_counter()
                    found = {"kind": "final", "method": method, "number": number, "seed": seed}
                    found |= self.trajectory(method, options, seed, budgets, quantize=True)
                    found["seconds"] = time.perf_counter() - start
                    self.journal.add(found)
                before, never_cell = self.before(seed), self.never_taught_cell(seed)
                never = None if never_cell is None else readings(never_cell)
                for i in budgets:
                    rows[i].append((cell_rows(found["budgets"][str(i)]), None if never_cell is None
                                    else cell_rows(never_cell)))
                    row = readings(found["budgets"][str(i)])
                    runs[i].append({"seed": seed, **{k: before[k] for k in ("V_before", "V_worst_before")},
                                    **row, "topics_change": {t: row["topics"][t] - before["topics"][t]
                                                             for t in row["topics"]}} | residual_of(row, never))
                bar.update(len(budgets))
        return runs, rows

    def run(self) -> dict:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        n = len(s.budgets)
        bar = tqdm(total=len(s.methods) * (s.trials + s.seeds * n), desc="compare", disable=not self.progress)
        methods = {}
        for method in s.methods:
            trials = self.search(method, bar)
            best = {i: best_trial(trials, i) for i in range(n)}
            runs, rows = self.finals(method, best, bar)
            methods[method] = {"trials": trials, "budgets": [
                {"budget": s.budgets[i], "collateral_budget": s.collateral[i], "best_trial": best[i]["number"],
                 "best": best[i]["overrides"], "runs": runs[i],
                 "summary": summarise(runs[i]) | {"intervals": interval_summary(rows[i])}} for i in range(n)]}
        bar.close()
        self._fresh()
        chance = statistics.fmean(1 / len(item.choices) for item in self.evaluation.items)
        return {"settings": dataclasses.asdict(s), "n_facts": len(self.evaluation.items), "chance": chance,
                "V_size": len(self.splits[0][1]),
                "splits": {str(k): [self.evaluation.items.index(item) for item in held_out]
                           for k, (_, held_out) in self.splits.items()},  # V's questions per seed
                "watched": {t: len(v) for t, v in self.evaluation.watched.items()},
                "protected": None if self.evaluation.protected is None
                else {t: len(v) for t, v in self.evaluation.protected.items()},
                "reported": {t: len(v) for t, v in self.evaluation.reported.items()},
                "before": [self.before(k) for k in range(1, s.seeds + 1)], "methods": methods,
                "never_taught": None if self.never_taught is None
                else [self.never_taught_row(k) for k in range(1, s.seeds + 1)]}
