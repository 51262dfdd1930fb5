"""How far the 4-bit quantisation attack's readings move when the weights move by no more than
bfloat16's rounding: the resolution of the attack's rows when float32 and bfloat16 runs are set
side by side.

    python bench/quantisation_noise.py --draws 10

The bundled model's weights (float32) are each multiplied by 1 + u, u uniform in +-2^-9 (half
of bfloat16's spacing relative to the value: what rounding to bfloat16 may do to each weight),
with `--draws` seeds; each perturbed copy is quantised to 4 bits (round to nearest, as the
attack does) and every built-in topic is read in cloze. Rounding to bfloat16 itself is one more
row. Writes the section `quantisation-noise` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--label", help="names the section (quantisation-noise-LABEL), for a model other than the bundled one")
    args = parser.parse_args()

    from _common import write_section
    from cir.attacks.quantization import quantize_model
    from cir.attacks.suite import accuracies
    from cir.data.mcq import topic_sets
    from cir.models import load_model
    from cir.tables import markdown_table

    model, tokenizer = load_model(args.model)
    topics = topic_sets()
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def reading(change) -> dict:
        copied = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in copied.named_parameters():
                p.copy_(change(name, original[name]))
        quantize_model(copied, bits=args.bits)
        return accuracies(copied, tokenizer, topics)

    rows = {"float32": reading(lambda _, w: w),
            "rounded to bfloat16": reading(lambda _, w: w.to(torch.bfloat16).float())}
    for draw in range(args.draws):
        generator = torch.Generator().manual_seed(draw)

        def jitter(_, w, generator=generator):
            return w * (1 + (torch.rand(w.shape, generator=generator) * 2 - 1) * 2 ** -9)

        rows[f"jitter, seed {draw}"] = reading(jitter)
        print(rows[f"jitter, seed {draw}"], flush=True)
    names = list(topics)
    sizes = {t: len(topics[t]) for t in names}
    jittered = [r for k, r in rows.items() if k.startswith("jitter")]
    body = [[k] + [f"{r[t]:.3f}" for t in names] for k, r in rows.items()]
    body.append(["range over the draws, in questions"] + [
        f"{round((max(r[t] for r in jittered) - min(r[t] for r in jittered)) * sizes[t])}" for t in names])
    write_section("quantisation-noise" + (f"-{args.label}" if args.label else ""), (
        f"## The {args.bits}-bit attack's resolution: the readings under rounding-sized changes of the weights"
        + (f" ({args.label})" if args.label else "") + "\n\n"
        f"Every built-in topic in cloze after {args.bits}-bit round-to-nearest quantisation (groups of 128) of "
        f"`{args.model}` in float32; rounded to bfloat16; and with every weight multiplied by 1 + u, u uniform in "
        "+-2^-9 (what rounding to bfloat16 may do), one row per seed. The last row is how many questions each "
        "topic moves across those draws: a float32 and a bfloat16 run whose quantised rows differ by that much "
        "differ by the rounding alone.\n\n" + markdown_table(["weights"] + names, body)))


if __name__ == "__main__":
    sys.exit(main())
