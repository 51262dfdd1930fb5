"""Run directories: written whole or not at all, by the main process alone.

Under a launcher every process runs the same code: each trains on its shard, every one takes
part in gathering sharded weights, and the main process alone writes, into a staging folder
renamed into place at the end (cir.outputs); the others wait for it. `unlearn`, `teach` and
the demo all write through `run_directory` and `save_weights`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from cir import distributed
from cir.models import save_model
from cir.outputs import staged_output, write_json
from cir.report import run_report
from cir.unlearning.loop import UnlearningResult
from cir.unlearning.run_config import RunConfig, config_dict


@contextlib.contextmanager
def run_directory(out: str | Path, overwrite: bool = False):
    """Yield, on the main process, a staging directory that replaces `out` when the block ends
    without an exception; on every other process None. All processes then wait for each other."""
    if distributed.is_main():
        with staged_output(out, overwrite) as staging:
            yield staging
    else:
        yield None
    distributed.barrier()


def save_weights(model, tokenizer, staging: Path | None) -> None:
    """Write the model into `staging` (None: another process, which writes nothing). Every
    process must call it: sharded weights are first gathered onto the main process."""
    weights = distributed.full_state_dict(model)
    if staging is not None:
        save_model(model, tokenizer, staging, state_dict=weights)


def write_run(out_dir: Path, result: UnlearningResult, run: RunConfig, sources: dict) -> None:
    """The resolved config, summary and report of a run into `out_dir` (metrics.jsonl is
    written as it runs; the model by `save_weights`)."""
    resolved = config_dict(run, result.method_config)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(resolved | {"sources": sources}, sort_keys=False))
    summary = {
        "method": run.method, "stop_reason": result.stop_reason, "stopped": result.stopped, "kept_epoch": result.kept_epoch,
        "seconds": result.seconds, "n_facts": result.n_facts, "seconds_per_fact": result.seconds_per_fact,
        "original_text_loss": result.original_loss,
        "kept": result.metrics[result.kept_epoch] if result.kept_epoch < len(result.metrics) else None,
    } | result.extra
    write_json(out_dir / "result.json", summary)
    (out_dir / "report.md").write_text(run_report(result, run, resolved))
