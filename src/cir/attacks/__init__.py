"""Attacks that try to bring forgotten facts back, and membership inference.

relearn:  fine-tune on some forget facts (T), measure the others (V) every epoch.
quantize: round-to-nearest weight quantisation (8 or 4 bits) of the decoder layers.
probes:   other prompt formats (k-shot, rephrased templates) for the same questions.
mia:      LOSS, zlib and Min-K% membership scores, and their ROC AUC.
"""

from cir.attacks.mia import auc, mia_scores, mia_report
from cir.attacks.probes import PROBE_FORMATS, probe_mcq
from cir.attacks.quantize import quantize_model, quantize_tensor
from cir.attacks.relearn import relearn, split_forget

__all__ = ["PROBE_FORMATS", "auc", "mia_report", "mia_scores", "probe_mcq", "quantize_model", "quantize_tensor",
           "relearn", "split_forget"]
