"""Readable tables and reports."""

from __future__ import annotations

from cir.tables import markdown_table


def _fmt(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def run_report(result, run, resolved: dict) -> str:
    """report.md of one unlearning run."""
    import yaml

    keys = ["epoch", "forget_loss", "forget_accuracy", "forget_recall", "text_loss", "loss_ratio", "kl", "collateral",
            "in_budget", "seconds"]
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
        *_collateral_section(result.extra.get("collateral")),
        *_probe_section(result.extra.get("probes")),
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(resolved, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _collateral_section(collateral: dict | None) -> list[str]:
    """Each watched fact set before and on the kept weights, and the one that lost most."""
    if not collateral:
        return []
    rows = [[name, _fmt(entry["before"], 3), _fmt(entry["after"], 3), entry["questions"], entry["lost"]]
            for name, entry in collateral["sets"].items()]
    worst = collateral["sets"][collateral["worst"]]
    return ["## Facts kept (watched by the collateral budget)", "",
            markdown_table(["fact set", "before", "after", "questions", "questions lost"], rows), "",
            f"Lost most: {collateral['worst']} ({_fmt(worst['before'], 3)} -> {_fmt(worst['after'], 3)}, "
            f"{worst['lost']} of {worst['questions']} questions); the collateral budget allows a drop of "
            f"{collateral['budget']:g} in any watched set.", ""]


def _probe_section(probes: dict | None) -> list[str]:
    """The forget facts in every held-out probe, before unlearning and on the kept weights."""
    if not probes:
        return []
    from cir.evaluation.probes import recall_note

    before, after = probes["before"], probes["after"]
    rows = [[name, _fmt(before["probes"][name]), _fmt(after["probes"].get(name)), before["n"][name]]
            for name in before["probes"]]
    note = recall_note(before["n"].get("recall", before["n"]["cloze"]), before["n"]["cloze"])
    return ["## Forget facts in every held-out probe", "",
            markdown_table(["probe", "before", "after", "questions"], rows), "",
            f"Worst probe (highest accuracy) after unlearning: {after['worst']} ({_fmt(after['worst_accuracy'])}); "
            "no probe text is in the training texts." + (f" {note[0].upper()}{note[1:]}." if note else ""), ""]


# ---------------------------------------------------------------- robustness report (cir report)
def _label(spec: str) -> str:
    from pathlib import Path

    return Path(spec).stem if spec.endswith((".jsonl", ".json")) else spec.removeprefix("builtin:")


METRIC_FIELDS = ("forget_accuracy", "disruption")  # what the report reads of metrics.jsonl besides the epoch


def _read_metrics(path) -> list[dict]:
    """metrics.jsonl rows: each with an integer epoch, and the numbers above in every row or none."""
    from cir.data._io import read_jsonl
    from cir.errors import InputError

    rows = []
    for line, row in read_jsonl(str(path)):
        required = ["epoch"] + [key for key in METRIC_FIELDS if rows and key in rows[0]]
        missing = [key for key in required if key not in row]
        if missing:
            raise InputError(f"missing field '{missing[0]}'", path=str(path), line=line)
        for key in METRIC_FIELDS:  # null: a value that was not finite (NaN), as this project writes it
            if key in row and row[key] is None:
                row[key] = float("nan")
        for key in ("epoch",) + METRIC_FIELDS:
            value, kind = row.get(key, 0), int if key == "epoch" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise InputError(f"field '{key}' must be {'int' if key == 'epoch' else 'a number'}, got "
                                 f"{type(value).__name__}", path=str(path), line=line)
        rows.append(row)
    return rows


def load_run(run_dir) -> dict:
    """What `cir report` reads from a run directory: metrics.jsonl, result.json, config.yaml sources,
    demo.json and attacks.json, each when present."""
    import json
    from pathlib import Path

    import yaml

    from cir.attacks.record import read_attacks
    from cir.errors import InputError

    path = Path(run_dir)
    if not path.is_dir():
        raise InputError("not a run directory", path=str(path))
    run = {"name": path.name, "path": str(path), "metrics": [], "kept_epoch": None, "forget": [], "demo": None,
           "attacks": read_attacks(path)}
    try:
        if (path / "metrics.jsonl").is_file():
            run["metrics"] = _read_metrics(path / "metrics.jsonl")
        if (path / "result.json").is_file():
            run["kept_epoch"] = json.loads((path / "result.json").read_text(encoding="utf-8")).get("kept_epoch")
        if (path / "demo.json").is_file():
            run["demo"] = json.loads((path / "demo.json").read_text(encoding="utf-8"))
        if (path / "config.yaml").is_file():
            config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
            run["forget"] = config.get("sources", {}).get("forget", [])
    except (ValueError, yaml.YAMLError, AttributeError) as error:
        raise InputError(f"unreadable run file ({error})", path=str(path)) from None
    kept = run["kept_epoch"]
    if kept is not None and (isinstance(kept, bool) or not isinstance(kept, int) or kept < 0):
        raise InputError(f"field 'kept_epoch' must be an epoch number, got {kept!r}", path=str(path / "result.json"))
    if not run["metrics"] and not run["attacks"]:
        raise InputError("no metrics.jsonl or attacks.json: not a run directory", path=str(path))
    return run


def topic_accuracies(run: dict) -> dict[str, dict[str, float]]:
    """{topic: {stage: accuracy}}: before / after unlearning, after each attack."""
    topics: dict[str, dict[str, float]] = {}
    metrics, kept = run["metrics"], run["kept_epoch"]
    if metrics and "forget_accuracy" in metrics[0]:
        kept = len(metrics) - 1 if kept is None or kept >= len(metrics) else kept
        name = " + ".join(_label(s) for s in run["forget"]) or "forget"
        topics[name] = {"before": metrics[0]["forget_accuracy"], "after unlearning": metrics[kept]["forget_accuracy"]}
    if run["demo"]:  # demo.json: {"rows": {stage: {topic or "V": accuracy}}}
        for stage, row in run["demo"].get("rows", {}).items():
            for topic, value in row.items():
                if isinstance(value, float):
                    topics.setdefault(topic, {})[stage] = value
    for key, result in sorted(run["attacks"].items()):
        if key.startswith("relearn") and "eval" in result:
            stages = topics.setdefault(_label(result["eval"]), {})
            stages.setdefault("after unlearning", result["before"])
            stages[f"after {key}"] = result["max_accuracy"]
        elif key.startswith("quantize"):
            for spec, entry in result.get("mcq", {}).items():
                topics.setdefault(_label(spec), {}).setdefault("after unlearning", result["before"][spec])
                topics[_label(spec)][f"after {key}"] = entry["accuracy"]
    return topics


def pyplot():
    """matplotlib's pyplot, drawing to files only (imported when a plot is made)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 100) -> None:
    """Write `fig` as a PNG renamed into place (a link at `path` is replaced), and close it."""
    import io

    from cir.outputs import write_file

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    write_file(path, buffer.getvalue())
    pyplot().close(fig)


def plot_unlearning(runs: list[dict], path) -> bool:
    runs = [r for r in runs if r["metrics"]]
    if not runs:
        return False
    plt = pyplot()
    fig, (acc, dis) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        epochs = [row["epoch"] for row in run["metrics"]]
        for ax, key in ((acc, "forget_accuracy"), (dis, "disruption")):
            ax.plot(epochs, [row.get(key, float("nan")) for row in run["metrics"]], marker="o", label=run["name"])
    acc.set(title="forget accuracy while unlearning", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.05))
    dis.set(title="disruption while unlearning", xlabel="epoch", ylabel="disruption")
    acc.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_relearn(runs: list[dict], path) -> bool:
    curves = [(f"{run['name']} {key}", ([res["before"]] if "before" in res else []) + res["per_epoch"])
              for run in runs for key, res in sorted(run["attacks"].items()) if key.startswith("relearn")]
    if not curves:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves:
        ax.plot(range(len(values)), values, marker="o", label=label)
    ax.set(title="eval accuracy under the relearning attack", xlabel="attack epoch (0 = before)",
           ylabel="accuracy", ylim=(0, 1.05))
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_topics(run: dict, topics: dict, path) -> bool:
    if not topics:
        return False
    plt = pyplot()
    stages = list(dict.fromkeys(stage for values in topics.values() for stage in values))
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(topics) * len(stages) / 2), 4))
    for i, stage in enumerate(stages):
        xs = [t + i * width for t in range(len(topics))]
        ax.bar(xs, [values.get(stage, 0.0) for values in topics.values()], width, label=stage)
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(topics))], list(topics))
    ax.set(title=f"accuracy per topic: {run['name']}", ylabel="accuracy", ylim=(0, 1.05))
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _attack_rows(run: dict) -> list[list]:
    rows = []
    for key, res in sorted(run["attacks"].items()):
        if key.startswith("relearn"):
            rows.append([key, _label(res.get("eval", "")), _fmt(res.get("before"), 3), _fmt(res["max_accuracy"], 3)])
        elif key.startswith("quantize"):
            rows += [[key, _label(spec), _fmt(res["before"][spec], 3), _fmt(entry["accuracy"], 3)]
                     for spec, entry in res.get("mcq", {}).items()]
        elif key == "mia":
            rows.append([key, "AUC " + ", ".join(f"{m} {v:.3f}" for m, v in res["auc"].items()), "-", "-"])
    return rows


def robustness_markdown(runs: list[dict], topics: dict, plots: list[str]) -> str:
    lines = ["# Robustness report", "", f"Runs: {', '.join(r['name'] for r in runs)}", ""]
    lines += [f"![{name}]({name})" for name in plots] + [""]
    for run in runs:
        lines += [f"## {run['name']}", ""]
        if run["metrics"]:
            rows = [[row["epoch"], _fmt(row.get("forget_accuracy"), 3), _fmt(row.get("disruption"), 5)]
                    for row in run["metrics"]]
            lines += [markdown_table(["epoch", "forget accuracy", "disruption"], rows), ""]
        if run["attacks"]:
            lines += ["Attacks (accuracy before -> after; relearn: the maximum over epochs):", "",
                      markdown_table(["attack", "fact set", "before", "after"], _attack_rows(run)), ""]
        if topics[run["name"]]:
            stages = list(dict.fromkeys(s for values in topics[run["name"]].values() for s in values))
            rows = [[t] + [_fmt(v.get(s), 3) for s in stages] for t, v in topics[run["name"]].items()]
            lines += [markdown_table(["topic"] + stages, rows), ""]
    return "\n".join(lines)


def robustness_report(dirs: list, out) -> list[str]:
    """report.md, report.json and PNG plots of run directories into `out`; returns the plot names.
    Every file is written anew and renamed into place: a symbolic link in `out` is replaced, never
    written through."""
    from pathlib import Path

    from cir.errors import InputError
    from cir.outputs import check_writable, write_file, write_json

    runs = [load_run(d) for d in dirs]
    names = [r["name"] for r in runs]
    if len(set(names)) < len(names):
        for run in runs:
            run["name"] = run["path"]
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError("is not a directory (a link is not followed)", path=str(out))
    check_writable(out / "report.md")
    topics = {run["name"]: topic_accuracies(run) for run in runs}
    plots = []
    if plot_unlearning(runs, out / "unlearning.png"):
        plots.append("unlearning.png")
    if plot_relearn(runs, out / "relearn.png"):
        plots.append("relearn.png")
    for i, run in enumerate(runs):
        name = f"topics-{i}.png" if len(runs) > 1 else "topics.png"
        if plot_topics(run, topics[run["name"]], out / name):
            plots.append(name)
    write_file(out / "report.md", robustness_markdown(runs, topics, plots))
    write_json(out / "report.json", {"runs": runs, "topics": topics, "plots": plots})
    return plots
