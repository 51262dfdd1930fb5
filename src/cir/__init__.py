"""cir: make a language model forget chosen facts, robustly and without collateral damage.

The flagship method is Collapse of Irrelevant Representations (Sondej & Yang, 2025):
before an unlearning update is formed, the directions that the forget set's activations
and gradients have in common are removed, so the update touches only what is specific to
the facts being forgotten.

The Python API (docs/api.md): load_model, load_facts, unlearn (in place) or unlearn_to_dir
(a run directory), evaluate, compare, audit (a verdict with intervals on any unlearned model),
and the attacks in cir.attacks (relearn, quantize, the grids). The training loop and its
options (RunConfig) are in cir.unlearning.
"""

from cir import attacks
from cir.api import compare, evaluate, unlearn, unlearn_to_dir
from cir.auditing import AuditSettings, audit
from cir.comparison import CompareSettings
from cir.data import load_facts
from cir.errors import DivergedError, InputError
from cir.models import load_model, save_model
from cir.unlearning.loop import UnlearningResult
from cir.unlearning.run_config import RunConfig

__all__ = ["AuditSettings", "CompareSettings", "DivergedError", "InputError", "RunConfig", "UnlearningResult", "attacks", "audit", "compare",
           "evaluate", "load_facts", "load_model", "save_model", "unlearn", "unlearn_to_dir"]
__version__ = "0.1.0"
