"""One fine-tuning step of the bundled model, as teaching takes it (16 of the taught people's
sentences, the MLP weights, Adam), on one torch thread and on two: what the demo's training
stages cost per step, and how far a second thread speeds them up."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import write_section

STEPS = 10


def one(threads: int) -> float:
    """Seconds for STEPS steps (and the starting pass that reads the loss before any), in this process."""
    import torch

    from cir.benchmarks.taught import TeachRecipe, invented_people
    from cir.models import load_model
    from cir.training.finetune import finetune

    torch.set_num_threads(threads)
    model, tokenizer = load_model()
    forget, kept, _ = invented_people(TeachRecipe())
    sentences = [s for item in forget + kept for s in item.sentences()][: 16 * STEPS]
    start = time.perf_counter()
    finetune(model, tokenizer, sentences, epochs=1, lr=3e-4, params="mlp", batch_size=16, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    if args.threads is not None:
        print(one(args.threads))
        return
    # each thread count in a process of its own, one after the other (torch keeps its first setting)
    seconds = {n: float(subprocess.run([sys.executable, __file__, "--threads", str(n)], check=True,
                                       capture_output=True, text=True).stdout.split()[-1]) for n in (1, 2)}
    write_section("finetune-step", f"""## One fine-tuning step of the bundled model, one thread and two

{STEPS} steps of 16 taught sentences (MLP weights, Adam) and the pass that reads the starting loss:

| torch threads | seconds | a step, the starting pass shared out |
|---|---|---|
| 1 | {seconds[1]:.1f} | {seconds[1] / STEPS:.2f} s |
| 2 | {seconds[2]:.1f} | {seconds[2] / STEPS:.2f} s |

Two threads run {seconds[1] / seconds[2]:.2f}x as fast as one.
""")


if __name__ == "__main__":
    main()
