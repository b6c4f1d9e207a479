from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from river import datasets

from delta.events import PredictEvent, TrainEvent
from delta.host import ModelHost
from delta.snapshots import SnapshotError, SnapshotStore

SPEC = "preprocessing.StandardScaler() | linear_model.LogisticRegression()"
ROWS = list(itertools.islice(datasets.Phishing(), 300))


def trained_host(n: int) -> ModelHost:
    host = ModelHost(SPEC)
    for x, y in ROWS[:n]:
        host.learn(TrainEvent(None, x, y))
    return host


def save(store: SnapshotStore, host: ModelHost, offset: int) -> str:
    snap = store.save(host.state(), {"model_version": host.version, "created": "t", "trained": host.trained_total,
                                     "spec": host.spec, "offsets": {"train/0": offset}}).result()
    return snap.id


def test_round_trip_restores_the_same_host(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=5)
    host = trained_host(200)
    snap_id = save(store, host, 200)
    meta, state = store.load(snap_id)
    assert meta["offsets"] == {"train/0": 200} and meta["trained"] == 200
    other = ModelHost("linear_model.Perceptron()")
    other.restore(state)
    assert other.report() == host.report()
    x = ROWS[250][0]
    assert other.predict(PredictEvent("p", x), 0) == host.predict(PredictEvent("p", x), 0)
    for x, y in ROWS[200:]:
        host.learn(TrainEvent(None, x, y))
        other.learn(TrainEvent(None, x, y))
    assert other.report() == host.report()
    listed = store.list()
    assert [s.id for s in listed] == [snap_id] and listed[0].size == (tmp_path / f"{snap_id}.delta").stat().st_size
    store.close()


def test_keeps_the_newest_and_skips_a_corrupt_one(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    ids = [save(store, trained_host(n), n) for n in (50, 100, 150)]
    assert [s.id for s in store.list()] == ids[:0:-1]
    newest = tmp_path / f"{ids[2]}.delta"
    newest.write_bytes(newest.read_bytes()[:-100])
    with pytest.raises(SnapshotError, match="corrupt"):
        store.load(ids[2])
    meta, _ = store.load_latest()  # type: ignore[misc]
    assert meta["id"] == ids[1] and meta["offsets"] == {"train/0": 100}
    store.close()


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    snap_id = save(store, trained_host(20), 20)
    path = tmp_path / f"{snap_id}.delta"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.load_latest() is None
    store.close()


def test_ids_are_never_paths(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", keep=2)
    (tmp_path / "evil.delta").write_bytes(b"x")
    for bad in ("../evil", "/etc/passwd", "snap-1", "snap-000000000001/../../evil"):
        with pytest.raises(SnapshotError, match="no snapshot"):
            store.load(bad)
    store.close()


def test_sequence_continues_after_restart_and_no_temp_files_remain(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    first = save(store, trained_host(10), 10)
    store.close()
    again = SnapshotStore(tmp_path, keep=3)
    second = save(again, trained_host(10), 10)
    assert second > first
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    (tmp_path / ".snap-000000000009.tmp").write_bytes(b"torn")
    SnapshotStore(tmp_path, keep=3).close()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    again.close()


def test_rollback_installs_snapshot_model_as_new_version(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    host = trained_host(100)
    snap_id = save(store, host, 100)
    reference = trained_host(100)
    for x, y in ROWS[100:]:
        host.learn(TrainEvent(None, x, y))
    _, state = store.load(snap_id)
    assert host.rollback(state) == 2
    probe = [x for x, _ in ROWS[:20]]
    assert [host.predict(PredictEvent("p", x), 0).proba for x in probe] == [
        reference.predict(PredictEvent("p", x), 0).proba for x in probe]
    assert host.report()["metrics"] == reference.report()["metrics"]
    assert host.report()["events"]["trained"] == 300
    store.close()
