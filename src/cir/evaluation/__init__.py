"""Evaluation: how a model is read, and the protocol every table shares.

scoring:    a multiple-choice question's answer by the likelihood of each choice; text loss and KL.
probes:     the held-out ways of asking (rewordings, qa, k-shot, recall), and the worst of them.
protocol:   the kept sets' parts, the restatement filter, the measurement of a model, the residual.
rows:       the typed row a measurement makes, which every table and JSON file reads.
splits:     T and V: the forget set split by subject.
budgets:    the disruption and collateral budgets that stop an unlearning run.
membership: membership inference (LOSS, zlib, Min-K%) and PrivLeak: a measurement, not an attack.
statistics: intervals (the paired bootstrap over questions, seeds as strata, the worst inside each
            replicate), the noise floor, TOFU's forget quality and PrivLeak's two readings.
"""
