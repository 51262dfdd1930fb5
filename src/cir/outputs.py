"""Output directories that are either complete or absent: written to a staging folder and
renamed into place at the end, so a crash, Ctrl-C or SIGTERM leaves nothing half-written.

A staging folder is named `.NAME.partial-PID@HOST-XXXX` after the process writing it; one whose
process is gone (killed with SIGKILL, or the machine went down) is removed by the next run
writing the same NAME. It is made with the user's umask, as any directory the user makes, so the
output directory it becomes is as readable by the group as the user's other files.

A run claims its output directory from its start (`claim_output`: a file `.NAME.claim` beside it
naming the process), so that a second run given the same directory is refused at once, not after
hours of work; a claim whose process is gone is taken over.

Beside them, what a run says as it goes: `stage` names a long step on one line of standard error.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

from cir.errors import InputError


_quiet = False


@contextlib.contextmanager
def quiet(on: bool = True):
    """Within the block (when `on`), `stage` says nothing: the command line's --quiet, which
    also reaches the steps whose callers are not told of it (sampling the general text)."""
    global _quiet
    before, _quiet = _quiet, _quiet or on
    try:
        yield
    finally:
        _quiet = before


def stage(message: str, show: bool = True) -> None:
    """One line on standard error naming the long step that begins, for the steps a progress bar
    does not name (nothing when `show` is false, within `quiet()`, or on a process other than
    the first)."""
    from cir import distributed

    if show and not _quiet and distributed.is_main():
        print(f"cir: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """One line on standard error, `cir: warning: message` (on the first process; --quiet keeps it)."""
    from cir import distributed

    if distributed.is_main():
        print(f"cir: warning: {message}", file=sys.stderr, flush=True)


def check_writable(path: str | Path) -> None:
    """Refuse, before anything slow runs, a `path` that cannot be created: a probe file is made
    and removed in its nearest existing ancestor directory."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError("is not a directory", path=str(parent))
    try:
        fd, probe = tempfile.mkstemp(prefix=".cir-probe-", dir=parent)
    except OSError as error:
        raise InputError(f"cannot write here ({error.strerror})", path=str(parent)) from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", path=str(out))
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("output directory is not empty (use --overwrite to replace it)", path=str(out))
    check_writable(out)
    return out


def check_output_file(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.is_dir():
        raise InputError("is a directory, expected a file", path=str(out))
    if out.exists() and not overwrite:
        raise InputError("exists (use --overwrite to replace it)", path=str(out))
    check_writable(out)
    return out


def write_file(out: str | Path, data: str | bytes) -> None:
    """Write `data` to a new file renamed over `out` at the end: never a half-written file, and a
    symbolic link at `out` is replaced, its target left alone. Missing parent directories are made."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # exclusive: never through a link; the umask sets the mode
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def finite(value):
    """`value` with every NaN and infinity, however deeply nested, replaced by None (JSON null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(value, indent: int | None = None) -> str:
    """The one way this project writes JSON: standard JSON, every NaN and infinity written as
    null (`json.dumps` would write the bare NaN that no other JSON reader takes)."""
    return json.dumps(finite(value), indent=indent, allow_nan=False)


def write_json(out: str | Path, value, indent: int | None = 2) -> None:
    """`value` as a JSON file (`to_json`), written whole or not at all (`write_file`)."""
    write_file(out, to_json(value, indent) + "\n")


def _owner_gone(staging: Path, prefix: str) -> bool:
    """Whether the process named in a staging folder's name no longer runs (on this machine)."""
    pid, _, rest = staging.name[len(prefix):].partition("@")
    if not pid.isdigit() or not rest.startswith(socket.gethostname() + "-"):
        return False  # another machine's, or an older name without the owner: left alone
    return _process_gone(int(pid))


def _process_gone(pid: int) -> bool:
    """Whether no process `pid` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, as another user
        pass
    return False


def remove_stale_staging(out: Path) -> None:
    prefix = f".{out.name}.partial-"
    for staging in out.parent.iterdir():  # not glob: NAME may hold [ or *
        if staging.name.startswith(prefix) and not staging.is_symlink() and _owner_gone(staging, prefix):
            shutil.rmtree(staging, ignore_errors=True)


def new_directory(parent: Path, prefix: str) -> Path:
    """A new directory `prefix` + random letters in `parent`, its mode set by the umask as any
    directory the user makes (tempfile.mkdtemp's is 0700, which a run directory renamed into
    place would keep: no one else could read it)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o777)
            return path
        except FileExistsError:
            continue


# ---------------------------------------------------------------- claims on output directories
_claims: dict[Path, Path] = {}  # output directory -> its claim file, held by this process


def claim_file(out: Path) -> Path:
    return out.parent / f".{out.name}.claim"


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def claim_output(out: str | Path) -> bool:
    """Claim the output directory `out` for this process until `release_claim` (or the process
    ends): a file `.NAME.claim` beside it, created only where none is, naming the process. A
    claim of another process that still runs (or of another machine) is refused with an
    InputError; one whose process is gone is taken over. Returns whether it was claimed now
    (False: this process holds it already, or is not the main process under a launcher)."""
    from cir import distributed

    out = Path(out).resolve()
    if not distributed.is_main() or out in _claims:
        return False
    path = claim_file(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{os.getpid()}@{socket.gethostname()}"
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _holder(path)
            pid, _, host = holder.partition("@")
            if host == socket.gethostname() and pid.isdigit() and _process_gone(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            who = f"process {pid} on {host}" if pid.isdigit() and host else "a run that is still starting"
            raise InputError(f"another cir run ({who}) is writing this output directory; wait for it to finish or "
                             f"give another one (if no run is, remove {path})", path=str(out)) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(owner + "\n")
        if not _claims:
            atexit.register(release_claims)
        _claims[out] = path
        return True


def release_claim(out: str | Path) -> None:
    """End this process's claim on `out` (nothing where it holds none)."""
    path = _claims.pop(Path(out).resolve(), None)
    if path is not None and _holder(path) == f"{os.getpid()}@{socket.gethostname()}":
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def release_claims() -> None:
    """End every claim this process holds (the command line's, once its command ends)."""
    for out in list(_claims):
        release_claim(out)


@contextlib.contextmanager
def claimed(out: str | Path):
    """Within the block, `out` claimed for this process (`claim_output`); a claim it held
    already is left held."""
    new = claim_output(out)
    try:
        yield
    finally:
        if new:
            release_claim(out)


def claim_output_dir(out: str | Path, overwrite: bool) -> Path:
    """`check_output_dir`, then `claim_output`: what a command does before anything slow runs."""
    out = check_output_dir(out, overwrite)
    claim_output(out)
    return out


@contextlib.contextmanager
def _terminate_as_exit():
    """Within the block, SIGTERM exits like Ctrl-C interrupts: `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)  # None: set outside Python


@contextlib.contextmanager
def staged_output(out: str | Path, overwrite: bool = False):
    """Yield a staging directory; on success it replaces `out`, on any exception it is removed.
    `out` is claimed meanwhile (`claimed`: refused where another run claimed it)."""
    out = check_output_dir(out, overwrite).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with claimed(out):
        remove_stale_staging(out)
        staging = new_directory(out.parent, f".{out.name}.partial-{os.getpid()}@{socket.gethostname()}-")
        with _terminate_as_exit():
            try:
                yield staging
                publish_staging(staging, out, overwrite)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)


def publish_staging(staging: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished `staging` to `out`. With `overwrite` an existing `out` is moved aside
    and deleted; without it the rename itself refuses a non-empty `out` (atomically: another run
    may have written it meanwhile), and this run's result is kept beside it, under a visible
    name, for the user to find."""
    if overwrite:
        old = staging.with_name(staging.name + "-old")
        if out.exists():  # moved aside first: what cannot be deleted is left there, not half-gone
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        staging.rename(out)  # replaces an empty directory; refuses a non-empty one or a file
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
        kept = staging.with_name(staging.name.removeprefix("."))
        staging.rename(kept)
        raise InputError(f"{out} appeared while this run was working; rerun with --overwrite, or see {kept} "
                         "(this run's result)") from None
