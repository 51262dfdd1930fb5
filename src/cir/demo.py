"""The before/after table of the demo."""

from __future__ import annotations

from cir.report import markdown_table


def topic_table(forgotten: str, before: dict, after: dict, result) -> str:
    rows = []
    for topic in before:
        mark = " (forgotten)" if topic == forgotten else ""
        rows.append([topic + mark, f"{before[topic]:.3f}", f"{after[topic]:.3f}", f"{after[topic] - before[topic]:+.3f}"])
    kept = result.metrics[result.kept_epoch]
    others = [t for t in before if t != forgotten]
    worst = min(after[t] - before[t] for t in others) if others else 0.0
    lines = [
        markdown_table(["topic", "before", "after", "change"], rows),
        "",
        f"- held-out general-text loss: x{kept['loss_ratio']:.4f} of the original",
        f"- largest drop on another topic: {worst:+.3f}",
        f"- {result.seconds:.0f} s for {result.n_facts} facts ({result.seconds / max(result.n_facts, 1):.2f} s per fact)",
        f"- stopped by: {result.stop_reason}",
    ]
    return "\n".join(lines)
