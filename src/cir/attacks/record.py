"""attacks.json in a run directory: the latest result of each attack, read by `cir report`."""

from __future__ import annotations

import json
from pathlib import Path

from cir.errors import InputError
from cir.outputs import write_json

FILENAME = "attacks.json"


def check_record_dir(path: str | None) -> None:
    if path is not None and not Path(path).is_dir():
        raise InputError("--record expects an existing run directory", path=path)


def read_attacks(run_dir: str | Path) -> dict:
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"malformed JSON ({error})", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object of attack results", path=str(path))
    return data


def record_attack(run_dir: str | Path, key: str, result: dict) -> None:
    """Store `result` under `key` (e.g. relearn:mlp, quantize:4bit), replacing an earlier one."""
    data = read_attacks(run_dir) | {key: result}
    write_json(Path(run_dir) / FILENAME, data)
