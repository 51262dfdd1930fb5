"""Attacks that try to bring forgotten facts back: each a registered kind, met over grids.

base:         what an attack is (a frozen dataclass of its options, `apply` changes a model in
              place), `@register_attack`, `make_attack`.
relearning:   `relearn` kind: fine-tune on T's facts, general text or kept facts; V read each epoch.
quantization: `quantize` kind: round-to-nearest weight quantisation (4 or 8 bits).
grids:        GRIDS (suite, default, wide, full), each attack on its own copy of the model and
              measured into a row (cir.evaluation.rows); worst_attack: the highest V in the worst
              probe; suite: the cheap grid.
record:       a run directory's attacks.json.

Membership inference (`mia`, `privleak`) is a measurement, not an attack on weights: it lives
in cir.evaluation.membership and is re-exported here for the API's users.
"""

from cir.attacks.base import ATTACKS, Attack, AttackInputs, AttackOutcome, attack_names, make_attack, register_attack
from cir.attacks.grids import GRIDS, AttackConfig, attack_texts, grid, run_attack, run_grid, suite, worst_attack
from cir.attacks.quantization import Quantization, quantize, quantize_model, quantize_tensor
from cir.attacks.relearning import Relearning, relearn
from cir.evaluation.membership import auc, mia, mia_scores, privleak
from cir.evaluation.splits import split_forget

__all__ = ["ATTACKS", "GRIDS", "Attack", "AttackConfig", "AttackInputs", "AttackOutcome", "Quantization", "Relearning",
           "attack_names", "attack_texts", "auc", "grid", "make_attack", "mia", "mia_scores", "privleak", "quantize",
           "quantize_model", "quantize_tensor", "register_attack", "relearn", "run_attack", "run_grid", "split_forget",
           "suite", "worst_attack"]
