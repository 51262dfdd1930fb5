"""Compare unlearning methods as a frontier: each method at every disruption budget, judged in
the worst held-out probe after a relearning attack, with intervals over out-of-sample seeds.

A budget is a pair: the held-out general-text loss may rise by at most B (1.001 = 0.1%), and
the watched part of the other topics may lose at most C of their accuracy (the collateral
budget beside it). Each other topic's questions are in three parts that no run reads twice:
the budget watches a quarter, the method is given another quarter as facts to keep (CIR's
retain-aware collapse), and the tables report the other half, which nothing reads before. Budgets nest (both lists rise), so one unlearning trajectory serves them all:
a run goes on until the largest budget is passed, and each budget keeps the weights of the last
epoch before its own first violation, as a run with that budget alone would.

For every method a seeded optuna search (one objective per budget) looks for the setting that
leaves the least of V in its worst held-out probe after the relearning attack on T, on seed 0's
split. Each budget's best setting is then run on seeds 1..K, each a fresh T/V split that played
no part in choosing it: the tables hold those runs only (mean and 95% t-interval). Every trial
and every seed's run is appended to a journal in the output directory as it finishes, so an
interrupted comparison continues from there.

Every method sees the same forget set, splits, general text, watched topics, attack and
evaluation; only its own hyperparameters change.
"""

from cir.comparison.journal import Journal, journal_header, read_journal, write_journal
from cir.comparison.search import Comparison
from cir.comparison.settings import (DEFAULT_BUDGETS, DEFAULT_METHODS, GRID, QUICK_METHODS, CompareSettings, Evaluation,
                                     benchmark_options, grid_trial)
from cir.comparison.summary import STAGES, best_trial, mean_ci, summarise
from cir.comparison.tables import budget_table, markdown, trials_table, unreached, write


__all__ = ["DEFAULT_BUDGETS", "DEFAULT_METHODS", "GRID", "QUICK_METHODS", "STAGES", "CompareSettings", "Comparison",
           "Evaluation", "Journal", "benchmark_options", "best_trial", "budget_table", "grid_trial", "journal_header",
           "markdown", "mean_ci", "read_journal", "summarise", "trials_table", "unreached", "write", "write_journal"]
