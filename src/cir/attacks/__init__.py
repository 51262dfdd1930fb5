"""Attacks that try to bring forgotten facts back, and membership inference.

relearn:  fine-tune on some forget facts (T), measure the others (V) every epoch.
quantize: round-to-nearest weight quantisation (8 or 4 bits) of the decoder layers.
mia:      LOSS, zlib and Min-K% membership scores, and their ROC AUC; privleak: MUSE's PrivLeak.
suite:    relearning and quantisation, each on its own copy of the model.
run_grid: a grid of attacks (GRIDS: learning rates, weights, epochs, data, bits), each on its
          own copy; worst_attack: the one with the highest V in the worst probe.
probes:   other prompt formats (k-shot, rephrased templates) for the same questions.

relearn and quantize change the model they are given, in place; suite works on copies.
"""

from cir.attacks.membership import auc, mia, mia_scores, privleak
from cir.probes import PROBE_FORMATS, probe_mcq
from cir.attacks.quantization import quantize, quantize_model, quantize_tensor
from cir.attacks.relearning import relearn, split_forget
from cir.attacks.suite import GRIDS, Attack, AttackConfig, grid, run_grid, suite, worst_attack

__all__ = ["GRIDS", "PROBE_FORMATS", "Attack", "AttackConfig", "auc", "grid", "mia", "mia_scores", "privleak",
           "probe_mcq", "quantize", "quantize_model", "quantize_tensor", "relearn", "run_grid", "split_forget", "suite",
           "worst_attack"]
