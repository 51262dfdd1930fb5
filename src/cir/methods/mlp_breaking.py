"""MLP breaking: CIR's loss and step without the collapse (the CIR paper's ablation).

    L_forget = mean_{l, t} max(0, <o_l(x_t), o0_l(x_t)> / n_l^2)      (o: MLP output, n_l: mean ||o0_l||)
    update   = sum_t g_t a_t^T over the trained MLP projections, global L2 norm `unlearning_rate`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cir.methods import register
from cir.methods.cir import CIR, CIRConfig


@dataclass
class MLPBreakingConfig(CIRConfig):
    forget_loss: str = "mlp_breaking"
    collapse: str = "none"

    rate_range: ClassVar[tuple[float, float]] = (1e-4, 0.1)  # without the collapse, steps disrupt far more


@register("mlp_breaking")
class MLPBreaking(CIR):
    Config = MLPBreakingConfig
    reference = "Sondej & Yang 2025 (arXiv 2509.11816), ablation: the MLP-breaking loss without collapse"
