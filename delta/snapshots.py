"""Versioned snapshots: the model, its metrics and counts, and the next offset of every training partition learned.

Why: training is effectively-once only if the model and the offsets it has learned up to are saved together. The
worker takes a snapshot between two batches (so model and offsets agree), pickles it there (the only pause the hot
path sees, reported as ``snapshots.last_pause_ms``) and hands the bytes to a writer thread.

File format (one file per snapshot, ``snap-<sequence>.delta``)::

    DELTA-SNAPSHOT 1\\n
    <sha256 hex of everything after this line>\\n
    <metadata JSON: id, created, model_version, spec, counts, offsets>\\n
    <pickle of the host state>

Writes are atomic (temporary file, fsync, rename, fsync of the directory). A file whose checksum does not match
(torn or corrupted) is skipped with a warning and the previous one is used. The newest ``keep`` files are kept.

Security: unpickling runs code, so pickles are loaded only from files in the worker's own ``snapshots.dir`` whose
names match :data:`NAME`; that directory must be writable by the worker alone. Snapshot ids from the API are
validated against the same pattern, never used as paths.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delta.errors import DeltaError
from delta.events import dumps, loads

__all__ = ["Snapshot", "SnapshotError", "SnapshotStore"]

log = logging.getLogger(__name__)

MAGIC = b"DELTA-SNAPSHOT 1\n"
NAME = re.compile(r"^snap-(\d{12})$")


class SnapshotError(DeltaError):
    """A snapshot that cannot be used: unknown id, or unreadable / corrupt file."""


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot file says about itself (without unpickling the model)."""

    id: str
    meta: dict[str, Any]
    size: int

    def listing(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, **self.meta}


class SnapshotStore:
    """A directory of snapshot files; writing happens on one background thread, in order."""

    def __init__(self, directory: str | Path, keep: int) -> None:
        self.dir = Path(directory)
        self.keep = keep
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-snapshots")
        self._lock = threading.Lock()
        self._seq = max((int(m.group(1)) for p in self.dir.iterdir() if (m := NAME.match(p.stem))), default=0)
        for stale in self.dir.glob(".snap-*.tmp"):  # a write torn by a crash: never renamed, never used
            stale.unlink(missing_ok=True)
        self.last_pause_ms = 0.0
        self.last_write_ms = 0.0
        self.last_size = 0
        self.written = 0

    # --- writing -----------------------------------------------------------------------------------------------

    def save(self, state: dict[str, Any], meta: dict[str, Any]) -> Future[Snapshot]:
        """Pickle ``state`` now (the caller's pause) and write it in the background; the future gives the result."""
        started = time.perf_counter()
        payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._seq += 1
            snap_id = f"snap-{self._seq:012d}"
        meta = {"id": snap_id, **meta}
        body = dumps(meta) + b"\n" + payload
        self.last_pause_ms = (time.perf_counter() - started) * 1000
        return self._writer.submit(self._write, snap_id, meta, body)

    def _write(self, snap_id: str, meta: dict[str, Any], body: bytes) -> Snapshot:
        started = time.perf_counter()
        path = self.dir / f"{snap_id}.delta"
        tmp = self.dir / f".{snap_id}.tmp"
        data = MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._prune()
        self.last_write_ms = (time.perf_counter() - started) * 1000
        self.last_size = len(data)
        self.written += 1
        return Snapshot(snap_id, meta, len(data))

    def _prune(self) -> None:
        for path in self._files()[self.keep:]:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    # --- reading -----------------------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        """Snapshot files, newest first."""
        files = [p for p in self.dir.glob("snap-*.delta") if NAME.match(p.stem)]
        return sorted(files, key=lambda p: p.stem, reverse=True)

    def _path(self, snap_id: str) -> Path:
        if not isinstance(snap_id, str) or not NAME.match(snap_id):
            raise SnapshotError(f"no snapshot {snap_id!r}: ids look like snap-000000000042 (see GET /snapshots)")
        path = self.dir / f"{snap_id}.delta"
        if not path.is_file():
            raise SnapshotError(f"no snapshot {snap_id!r} in {self.dir} (it may have been pruned; see GET /snapshots)")
        return path

    @staticmethod
    def _read(path: Path, *, verify: bool) -> tuple[dict[str, Any], bytes, int]:
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            raise SnapshotError(f"{path.name} is not a Delta snapshot")
        digest, sep, body = data[len(MAGIC):].partition(b"\n")
        if not sep or (verify and hashlib.sha256(body).hexdigest().encode() != digest):
            raise SnapshotError(f"{path.name} is corrupt (checksum mismatch: torn write or damaged file)")
        meta_raw, sep, payload = body.partition(b"\n")
        if not sep:
            raise SnapshotError(f"{path.name} is truncated")
        try:
            meta = loads(meta_raw)
        except ValueError:
            raise SnapshotError(f"{path.name} has unreadable metadata") from None
        return meta, payload, len(data)

    def list(self) -> list[Snapshot]:
        out = []
        for path in self._files():
            try:
                meta, _, size = self._read(path, verify=False)
            except (SnapshotError, OSError):
                continue
            out.append(Snapshot(path.stem, meta, size))
        return out

    def load(self, snap_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Metadata and state of one snapshot (checksum verified before unpickling)."""
        meta, payload, _ = self._read(self._path(snap_id), verify=True)
        return meta, pickle.loads(payload)  # noqa: S301 - only files of our own snapshot dir, checksum verified

    def load_latest(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The newest snapshot that verifies; corrupt ones are skipped with a warning."""
        for path in self._files():
            try:
                return self.load(path.stem)
            except (SnapshotError, OSError, pickle.UnpicklingError, EOFError) as exc:
                log.warning("skipping snapshot %s: %s", path.name, exc)
        return None
