"""Training's building blocks, shared by unlearning methods, attacks and benchmarks.

batches:  forget facts and texts tokenised into batches (answer and subject masks).
finetune: plain fine-tuning on sentences (teaching a benchmark, relearning attacks, adapters).
hooks:    scoped forward and backward hooks that capture activations and gradients.
"""
