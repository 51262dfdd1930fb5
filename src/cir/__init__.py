"""cir: make a language model forget chosen facts, robustly and without collateral damage.

The flagship method is Collapse of Irrelevant Representations (Sondej & Yang, 2025):
before an unlearning update is formed, the directions that the forget set's activations
and gradients have in common are removed, so the update touches only what is specific to
the facts being forgotten.
"""

from cir.errors import InputError
from cir.models import load_model, save_model

__all__ = ["InputError", "load_model", "save_model"]
__version__ = "0.1.0"
