"""Plot the trade-off that bench/sweep.py measures: forgotten-topic accuracy against the
largest drop on another topic, one point per setting, with the demo's target region.

    python bench/frontier.py docs/sweep-capitals.jsonl --out docs/img/frontier.png

Reads the JSONL records that bench/sweep.py appends (any number of files) and writes a PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_records(paths: list[str]) -> list[dict]:
    records = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def plot(records: list[dict], out: str, chance: float = 0.25, max_drop: float = 0.03, near: float = 0.10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6.5))
    ax.axvspan(-max_drop, 0.005, ymin=0, ymax=1, color="tab:green", alpha=0.08)
    ax.axhspan(0, chance + near, color="tab:green", alpha=0.08)
    ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
    ax.text(-0.095, chance, "chance", va="bottom", ha="left", fontsize=8, color="grey")
    markers = "osD^vP*Xh<>p"
    for i, r in enumerate(records):
        ax.scatter(r["worst_other_change"], r["forget_after"], marker=markers[i % len(markers)], s=40, zorder=3,
                   label=r["overrides"])
    before = max(r["forget_before"] for r in records)
    ax.axhline(before, color="tab:red", linestyle="--", linewidth=1)
    ax.text(-0.095, before, "before unlearning", va="bottom", ha="left", fontsize=8, color="tab:red")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax.set_xlim(min(-0.1, min(r["worst_other_change"] for r in records) - 0.01), 0.01)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("largest accuracy change on another topic")
    ax.set_ylabel("forgotten topic's accuracy after unlearning")
    ax.set_title("The target is where the shaded bands cross: near chance, others within 3 points", fontsize=9)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="+", help="JSONL files written by bench/sweep.py")
    parser.add_argument("--out", default="docs/img/frontier.png")
    args = parser.parse_args()
    plot(load_records(args.results), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
