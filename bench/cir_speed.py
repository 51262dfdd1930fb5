"""CIR's speed and memory on the bundled model.

- one CIR step vs one plain fine-tuning step on the same batch of 32 fact sentences
  (target: <= 1.0x), at the defaults and with the paper's losses;
- the forward-truncation speed-up (MLP-breaking loss: forward stopped after the last loss
  layer vs run through the whole model);
- the memory of the statistics pass for 100 and 1,000 facts, 3 phrasings of each (streaming
  moments: constant).

Seconds per fact of whole runs are printed by `cir demo` (README) and `cir compare`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from _common import write_section


def timed(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_ratio(slow, fast, repeats: int = 7) -> float:
    """Median of slow/fast over back-to-back pairs: a shared machine's load changes between
    separate timings, much less within one pair."""
    slow(), fast()  # warm-up
    ratios = []
    for _ in range(repeats):
        start = time.perf_counter()
        slow()
        middle = time.perf_counter()
        fast()
        ratios.append((middle - start) / (time.perf_counter() - middle))
    return statistics.median(ratios)


def step_times(model, tokenizer, items):
    from cir.training.batches import forget_batches
    from cir.training.finetune import causal_lm_loss
    from cir.methods.cir import CIR, CIRConfig

    batch = forget_batches(tokenizer, items, batch_size=32)[0]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=1e-6)

    def finetune_step():
        loss = causal_lm_loss(model, batch.input_ids, batch.attention_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    results = {"finetune": timed(finetune_step)}
    ratios = {}
    configs = {"defaults": CIRConfig(),  # true logit, update from the answer-predicting positions
               # the paper's rule: the update over every token (the heavier update)
               "neg_cross_entropy": CIRConfig(forget_loss="neg_cross_entropy", update_tokens="all"),
               "mlp_breaking": CIRConfig(forget_loss="mlp_breaking", update_tokens="all")}
    for name, config in configs.items():
        method = CIR(model, tokenizer, config, [batch], [])
        method.prepare()
        method._new_stats()

        def cir_step():
            _, updates = method.forget_gradients(0)
            method.step(updates)

        results[f"cir_{name}"] = timed(cir_step)
        ratios[name] = interleaved_ratio(cir_step, finetune_step)  # cir / fine-tuning, pair by pair
    model.load_state_dict(original)
    return results, ratios


def truncation_speedup(model, tokenizer, items):
    from cir.architecture import forward_until
    from cir.training.batches import forget_batches

    batch = forget_batches(tokenizer, items, batch_size=32)[0]

    def truncated():
        with torch.no_grad():
            forward_until(model, 10, **batch.inputs())

    def full():
        with torch.no_grad():
            model(**batch.inputs(), use_cache=False)

    return interleaved_ratio(full, truncated)


def statistics_peak(n_facts: int) -> dict:
    """In a fresh process that streams the statistics of `n_facts` facts (3 phrasings each):
    the bytes held by the statistics and by the cached loss references (MiB), and the growth of
    the resident set from after loading to after the pass (MiB; the loading transient makes the
    process's lifetime peak uninformative)."""
    code = f"""
import json, os, torch
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
from cir.models import load_model
from cir.data import load_mcq, builtin_topics
from cir.training.batches import forget_batches
from cir.methods.cir import CIR, CIRConfig
from cir.data.mcq import MCQ
model, tok = load_model()
before = rss()
base = [q for t in builtin_topics() for q in load_mcq(t)]
items = [MCQ(q.question + f" ({{i}})", q.choices, q.answer, q.facts) for i, q in enumerate(base * ({n_facts} // len(base) + 1))][:{n_facts}]
method = CIR(model, tok, CIRConfig(forget_loss="mlp_breaking", train_layers=list(range(12)), loss_layers=[6, 7, 8, 9, 10]),
             forget_batches(tok, items, 32, phrasings=3, seed=0), [])
method.prepare()
moments = {{id(m): m for s in method.stats.values() for m in (s.acts, s.grads)}}.values()
stats = sum(t.numel() * t.element_size() for m in moments for t in m.tensors()) / 2**20
refs = sum(t.numel() * t.element_size() for r in method.forget_refs for t in r.values()) / 2**20
sentences = sum(len(b) for b in method.forget)
print(json.dumps({{"statistics": stats, "references": refs, "rss_growth": rss() - before, "sentences": sentences}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    # no options: --help says what is measured, without measuring it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from cir.data import load_mcq
    from cir.models import load_model

    model, tokenizer = load_model()
    items = load_mcq("capitals")
    steps, ratios = step_times(model, tokenizer, items[:11])
    speedup = truncation_speedup(model, tokenizer, items[:11])
    peaks = {n: statistics_peak(n) for n in (100, 1000)}
    write_section("cir", f"""## CIR step, truncation and memory (bundled SmolLM2-135M)

One step on the same batch of 32 fact sentences: seconds are medians of 5; the ratio to
fine-tuning is the median over 7 back-to-back pairs (CIR step, fine-tuning step), so the load of
the shared machine changes little within a pair (target: at most 1.0):

| step | seconds | ratio to fine-tuning |
|---|---|---|
| plain fine-tuning (full forward, cross-entropy, backward to every weight, SGD) | {steps['finetune']:.2f} | 1.00 |
| CIR at the defaults (true logit, head at the answer positions; activation-only backward; update from the answer-predicting positions; statistics) | {steps['cir_defaults']:.2f} | **{ratios['defaults']:.2f}** |
| CIR, negative cross-entropy, update over every token (the paper's rule) | {steps['cir_neg_cross_entropy']:.2f} | {ratios['neg_cross_entropy']:.2f} |
| CIR, MLP breaking, update over every token (forward stopped after layer 10 of 30) | {steps['cir_mlp_breaking']:.2f} | {ratios['mlp_breaking']:.2f} |

Forward-truncation speed-up (forward through layer 10 vs the whole model, same batch): **{speedup:.2f}x**.

Memory of the statistics pass (pass 0, MLP breaking, 12 trained layers, loss on layers 6-10):

| forget set | statistics (streaming sums) | cached loss references | resident set growth over the pass |
|---|---|---|---|
| 100 facts ({peaks[100]['sentences']:,} sentences) | {peaks[100]['statistics']:.0f} MiB | {peaks[100]['references']:.0f} MiB | {peaks[100]['rss_growth']:.0f} MiB |
| 1,000 facts ({peaks[1000]['sentences']:,} sentences) | {peaks[1000]['statistics']:.0f} MiB | {peaks[1000]['references']:.0f} MiB | {peaks[1000]['rss_growth']:.0f} MiB |

The statistics are sums of x and x xᵀ per module, O(d²) whatever the number of tokens; what
grows with the forget set is the MLP-breaking loss's cached original outputs (one row per
token and loss layer).
""")


if __name__ == "__main__":
    main()
