"""The one way bert-jax writes a file or a folder: under a temporary name
beside the target, renamed onto it only when complete.

A crash, a full disk or an exception mid-write therefore leaves the old file
(or nothing), never a half-written one that looks complete. The rename is
`os.replace`, atomic on one POSIX file system, which is why the temporary
name sits in the target's own folder.

* `atomic_path(path)`: a temporary path for code that writes by name
  (a library's `save(path)`), renamed onto `path` when the block succeeds;
* `write_text` / `write_bytes`: a whole file at once;
* `atomic_directory(path)`: a folder filled in the block, then renamed.

It sits at the bottom of the package (only `bert_jax.errors` below it), so
data code, checkpoints and commands all use it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from bert_jax.errors import CheckpointError


def temp_beside(path: str, marker: str) -> str:
    """A fresh, empty file beside `path` (`<name><marker>XXXX`) with the mode a
    plain `open(path, "w")` would give (mkstemp's is 0600)."""
    directory, name = os.path.split(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f"{name}{marker}", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    return temp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, marker: str = ".tmp-") -> Iterator[str]:
    """A temporary path beside `path`, renamed to `path` when the block ends
    without error and removed otherwise. `marker` names the temporary file
    (`<name><marker>XXXX`) so a reader can recognise leftovers."""
    temp = temp_beside(os.fspath(path), marker)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """`path` holds `text`, or (on any error) what it held before."""
    with atomic_path(path) as temp, open(temp, "w", encoding=encoding) as f:
        f.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`path` holds `data`, or (on any error) what it held before."""
    with atomic_path(path) as temp, open(temp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yields a fresh temp directory beside `path`, renamed to `path` only
    when the block finishes; an error leaves no directory at `path` (and an
    overwritten one as it was)."""
    path = pathlib.Path(path).absolute()
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} already exists; pick another output or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except OSError as e:  # a full disk, a permission: one line, no half-written output
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"cannot write {path} ({e.strerror or e}); nothing was written: free disk space or fix permissions"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
