"""One method of a comparison searched over a step range of its own, where the search of
`cir compare` never reached the budgets (every trial kept its last epoch at the smallest budget
and forgot nothing: the method's declared range ends too early for this benchmark).

    python bench/wider_search.py --benchmark taught --method gradient_difference \
        --steps 0.1,1.0 --same-as docs/journals/compare-taught.jsonl --out runs/wider-gd

The comparison is the one `cir compare --benchmark NAME` makes (the same forget questions, kept
sets, general text, budgets and attacks; `--same-as` refuses to run unless the evaluation
fingerprint equals that journal's), with the method's range set so that its three grid trials
fall on the two `--steps` and their geometric mean, no sampler trials, and each budget's best
step run on seeds 1-3. Its journal, compare.md and compare.json are written to --out, and the
same command continues it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--steps", required=True, help="LOW,HIGH: the first and last grid trial's step (the middle "
                                                      "one is their geometric mean)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--same-as", help="a journal of `cir compare` whose evaluation this one must equal")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    try:
        low, high = (float(s) for s in args.steps.split(","))
    except ValueError:
        parser.error(f"--steps takes LOW,HIGH, such as 0.1,1.0; got '{args.steps}'")
    if not 0 < low < high:
        parser.error(f"--steps takes 0 < LOW < HIGH; got '{args.steps}'")
    steps = [low, math.sqrt(low * high), high]

    import cir.api
    from cir.comparison import GRID, CompareSettings, Comparison, benchmark_options, markdown, read_journal, write
    from cir.data.general import general_text_split
    from cir.methods import get_method
    from cir.models import load_model

    # grid trial k of 3 sits at low * (high / low) ** ((k + 0.5) / 3): choose low and high so the
    # three fall on the steps asked for
    ratio = steps[1] / steps[0]
    config = get_method(args.method).Config
    config.rate_range = (steps[0] / math.sqrt(ratio), steps[-1] * math.sqrt(ratio))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    asked = {"benchmark": args.benchmark, "method": args.method, "steps": steps, "seeds": args.seeds}
    record = out / "wider_search.json"
    if record.exists() and json.loads(record.read_text()) != asked:
        sys.exit(f"{record}: {out} holds another search ({record.read_text().strip()})")
    record.write_text(json.dumps(asked) + "\n")

    base, tokenizer = load_model(args.model)
    retain, heldout = general_text_split(base, tokenizer, None)  # as `cir compare` takes them
    # what `cir compare` fixes for this method on the benchmark (only the method's own: the header
    # then names no other method's options)
    options = CompareSettings(options=benchmark_options(args.benchmark)).options_for(args.method)
    settings = CompareSettings(methods=(args.method,), trials=GRID, seeds=args.seeds, options=options)
    if args.same_as:
        want = read_journal(Path(args.same_as))[0]

        class Checked(Comparison):
            def run(self):  # the journal's header is written: its evaluation must be the other's
                have = read_journal(self.journal.path)[0]
                for key in ("model", "inputs", "benchmark"):
                    if have.get(key) != want.get(key):
                        sys.exit(f"{args.same_as}: its {key} differs from this search's ({want.get(key)} vs "
                                 f"{have.get(key)})")
                for key in ("budgets", "collateral", "max_epochs", "max_facts", "topic_questions", "attacks"):
                    if have["settings"][key] != want["settings"][key]:
                        sys.exit(f"{args.same_as}: its settings' {key} differ from this search's")
                return super().run()

        cir.api.Comparison = Checked
    result = cir.api.compare(base, tokenizer, benchmark=args.benchmark, settings=settings, retain=retain,
                             heldout=heldout, journal=out / "journal.jsonl")
    command = "python bench/wider_search.py " + shlex.join(sys.argv[1:])
    write(result, out, command)
    print(markdown(result))
    print(f"written to {out} (compare.md, compare.json, journal.jsonl)")


if __name__ == "__main__":
    sys.exit(main())
