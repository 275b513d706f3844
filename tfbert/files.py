"""Writing a file or folder so that readers see the old one or the complete new one.

with atomic_path("runs/model.keras") as staging:
    model.save(staging)          # renamed to runs/model.keras only if this succeeds
"""

import contextlib
import os
import shutil


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = True):
    """Yields a staging path beside `path`; renames it to `path` when the block
    succeeds and removes it when the block raises.

    The block writes a file or a folder at the staging path (which does not
    exist yet). The staging path is hidden in the same folder and keeps the
    name's endings, which savers check (`.<stem>.staging-<pid>.weights.h5` for
    `<stem>.weights.h5`), so the final rename is atomic: a crash at any moment leaves either the
    previous `path` or the complete new one, and at worst a hidden staging
    leftover, never a half-written `path`.

    Args:
        path: str or PathLike. The final file or folder; its parent folder is
            created when missing.
        overwrite: bool, default True. Replace an existing file at `path`.
            With False, or when `path` is an existing folder (folders are
            never replaced), an existing `path` raises `FileExistsError`,
            before the block runs and again at the rename.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    if os.path.isdir(path) or (os.path.lexists(path) and not overwrite):
        raise FileExistsError(f"{path} already exists; nothing was written or replaced.")
    os.makedirs(folder, exist_ok=True)
    stem, dot, endings = name.partition(".")
    staging = os.path.join(folder, f".{stem}.staging-{os.getpid()}{dot}{endings}")
    _remove(staging)  # left by an earlier crash of a process with this pid
    try:
        yield staging
        if not os.path.lexists(staging):
            raise FileNotFoundError(f"Nothing was written to the staging path for {path}.")
        if os.path.isdir(path) or (os.path.lexists(path) and not overwrite):
            raise FileExistsError(f"{path} appeared while it was written; nothing was replaced.")
        if os.path.isdir(staging):
            os.rename(staging, path)
        else:
            os.replace(staging, path)
    finally:
        _remove(staging)
