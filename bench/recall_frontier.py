"""Plot depth against collateral in recall: for each run that bench/per_fact.py recorded, the
forgotten topic's recall accuracy against the largest drop on a watched topic, one point per
epoch (a line per run), with the target region.

    python bench/recall_frontier.py docs/sweep-recall.jsonl --out docs/img/frontier-recall.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records", nargs="+", help="JSONL files of bench/per_fact.py's last lines")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for path in args.records for line in Path(path).read_text().splitlines() if line.strip()]
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
