"""Attacks that try to bring forgotten facts back, and membership inference.

relearn:  fine-tune on some forget facts (T), measure the others (V) every epoch.
quantize: round-to-nearest weight quantisation (8 or 4 bits) of the decoder layers.
mia:      LOSS, zlib and Min-K% membership scores, and their ROC AUC.
suite:    relearning and quantisation, each on its own copy of the model (the demo's attacks).
probes:   other prompt formats (k-shot, rephrased templates) for the same questions.

relearn and quantize change the model they are given, in place; suite works on copies.
"""

from cir.attacks.membership import auc, mia, mia_scores
from cir.attacks.probes import PROBE_FORMATS, probe_mcq
from cir.attacks.quantization import quantize, quantize_model, quantize_tensor
from cir.attacks.relearning import relearn, split_forget
from cir.attacks.suite import AttackConfig, suite

__all__ = ["PROBE_FORMATS", "AttackConfig", "auc", "mia", "mia_scores", "probe_mcq", "quantize", "quantize_model",
           "quantize_tensor", "relearn", "split_forget", "suite"]
