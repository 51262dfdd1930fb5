"""Output directories that are either complete or absent: written to a staging folder and
renamed into place at the end, so a crash or Ctrl-C leaves nothing half-written."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from cir.errors import InputError


def check_output_dir(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", path=str(out))
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("output directory is not empty (use --overwrite to replace it)", path=str(out))
    return out


@contextlib.contextmanager
def staged_output(out: str | Path, overwrite: bool = False):
    """Yield a staging directory; on success it replaces `out`, on any exception it is removed."""
    out = check_output_dir(out, overwrite).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
