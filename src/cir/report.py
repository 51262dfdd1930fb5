"""Readable tables and reports."""

from __future__ import annotations


def format_table(header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(str(c) for c in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def run_report(result, run, resolved: dict) -> str:
    """report.md of one unlearning run."""
    import yaml

    keys = ["epoch", "forget_loss", "forget_accuracy", "text_loss", "loss_ratio", "kl", "in_budget", "seconds"]
    keys = [k for k in keys if any(k in row for row in result.metrics)]
    rows = [[_fmt(row.get(k)) for k in keys] for row in result.metrics]
    lines = [
        f"# Unlearning run: {run.method}",
        "",
        f"- Stopped by: {result.stop_reason}",
        f"- Kept weights of epoch {result.kept_epoch} (the last within the disruption budget "
        f"{run.disruption} <= {run.budget})",
        f"- Facts: {result.n_facts}; wall time {result.seconds:.1f} s "
        f"({result.seconds / max(result.n_facts, 1):.2f} s per fact)",
        f"- Original held-out text loss: {result.original_loss:.4f}",
        "",
        "## Per epoch",
        "",
        markdown_table(keys, rows),
        "",
        "Epoch 0 is the original model (CIR collects its first statistics there, without updating).",
        "",
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(resolved, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
