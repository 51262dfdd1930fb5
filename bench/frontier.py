"""Plot a sweep's trade-off, with the target region, from its JSONL records (any number of files):

    python bench/frontier.py docs/sweep-capitals.jsonl --out docs/img/frontier.png
    python bench/frontier.py --recall docs/sweep-recall.jsonl --out docs/img/frontier-recall.png

By default, the records of the first sweep (bench/sweep.py, since retired: docs/sweep.md):
forgotten-topic accuracy against the largest drop on another topic, one point per setting.
With `--recall`, the last lines of bench/per_fact.py: the forgotten topic's recall accuracy
against the largest drop on a watched topic, one point per epoch (a line per run).
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


def plot_recall(records: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.add_patch(plt.Rectangle((0, 0), 1 / 24, 0.35, color="tab:green", alpha=0.15, label="target"))
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    for record in records:
        epochs = record.get("per_epoch") or [{"forget_recall": record["probes"]["recall"],
                                              "collateral": record["collateral"]}]
        points = [(e.get("collateral", 0.0), e["forget_recall"]) for e in epochs if "forget_recall" in e]
        label = " ".join(record["options"]).replace("collateral_budget=1", "").replace("budget=10", "")
        ax.plot(*zip(*points), marker="o", label=label[:70])
    ax.set(xlabel="largest drop on a watched topic (collateral; 1/24 = one question)",
           ylabel=f"recall on {records[0]['topic']} (first answer token)", xlim=(-0.02, 0.65), ylim=(0, 1))
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSONL files: bench/sweep.py's records, or with --recall "
                                                   "bench/per_fact.py's last lines")
    parser.add_argument("--recall", action="store_true", help="plot recall per epoch (bench/per_fact.py's records)")
    parser.add_argument("--out", help="the PNG (default: docs/img/frontier.png, with --recall "
                                      "docs/img/frontier-recall.png)")
    args = parser.parse_args()
    out = args.out or ("docs/img/frontier-recall.png" if args.recall else "docs/img/frontier.png")
    (plot_recall if args.recall else plot)(load_records(args.results), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
