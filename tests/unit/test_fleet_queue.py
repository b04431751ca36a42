"""The fleet's retrain queue without training: ranking, the budget, what each colour does, and the
queue's persistence (a SQLite file, the same tables the CLI and GET /fleet read)."""

from __future__ import annotations

from typing import Any

import pytest

from core.fleet_queue import QUEUED, QueueItem, QueueStore, queue_summary, rank, sync
from data_contracts.fleet import load_fleet
from training.fleet_retrain import FleetRetrainConfig, run_cycle
from training.gate import GateConfig


def verdict(segment: str, status: str, impact: float = 0.0, rows: int = 100, loss: float | None = None) -> dict[str, Any]:
    loss = impact / rows if loss is None else loss
    msg = {"red": "ROC AUC fell", "yellow": "temp drifted", "green": "", "not_enough_data": ""}[status]
    return {
        "name": f"flights-late--{segment}", "version": "1", "segment": segment, "status": status, "rows": rows,
        "auc_loss": loss, "impact": impact, "reasons": [{"message": msg}] if msg else [],
    }  # fmt: skip


def run(run_id: str, *verdicts: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run_id, "window_end": "2013-05-31", "verdicts": list(verdicts)}


def test_rank_is_gain_times_traffic_then_loss_then_name() -> None:
    items = [
        QueueItem("b", "b", "red", "1", 0.10, 50, 5.0, QUEUED, ""),
        QueueItem("a", "a", "red", "1", 0.05, 100, 5.0, QUEUED, ""),
        QueueItem("c", "c", "red", "1", 0.30, 100, 30.0, QUEUED, ""),
        QueueItem("d", "d", "red", "1", 0.10, 50, 5.0, QUEUED, ""),
    ]
    assert [i.model_name for i in rank(items)] == ["c", "b", "d", "a"]


def test_sync_queues_red_once_green_leaves_yellow_notifies_and_never_queues() -> None:
    items, ds = sync({}, [verdict("A", "red", 8.0), verdict("B", "yellow", 3.0), verdict("C", "green")], "r1", "d")
    assert set(items) == {"flights-late--A"} and items["flights-late--A"].state == QUEUED
    assert [(d.segment, d.action) for d in ds] == [("A", "queued"), ("B", "notified")]
    again, ds2 = sync(items, [verdict("A", "red", 8.0)], "r1", "d")  # the same run twice: nothing changes
    assert again == items and ds2 == []
    later, _ = sync(items, [verdict("A", "red", 2.0)], "r2", "d")  # a new run refreshes the rank, one row
    assert len(later) == 1 and later["flights-late--A"].score == 2.0 and later["flights-late--A"].run_id == "r2"
    kept, _ = sync(later, [verdict("A", "not_enough_data")], "r3", "d")
    assert kept == later
    gone, ds4 = sync(later, [verdict("A", "yellow", 1.0)], "r4", "d")
    assert gone == {} and [d.action for d in ds4] == ["left", "notified"]
    gone, ds5 = sync(later, [verdict("A", "green")], "r5", "d")
    assert gone == {} and ds5[0].reason == "turned green"


def test_red_on_broken_data_is_paged_never_queued() -> None:
    """A model red on broken data (a critical data_broken reason) is not queued for a retrain: a model
    fitted on the broken feed learns the fault. It leaves the queue if it was there; the decision says
    why; the policy switch restores queueing it."""
    broken = verdict("A", "red", 8.0)
    broken["reasons"] = [
        {"signal": "unit_change", "feature": "temp", "severity": "critical", "question": "data_broken", "message": "°C"},
        {"signal": "roc_auc_drop", "feature": None, "severity": "critical", "question": "model_hurt", "message": "AUC fell"},
    ]
    hurt = verdict("B", "red", 5.0)
    hurt["reasons"] = [{"signal": "roc_auc_drop", "severity": "critical", "question": "model_hurt", "message": "AUC fell"}]
    items, ds = sync({}, [broken, hurt], "r1", "d")
    assert set(items) == {"flights-late--B"}
    assert [(d.segment, d.action) for d in ds] == [("A", "withheld"), ("B", "queued")]
    assert "unit_change:temp" in ds[0].reason and "fix the feed" in ds[0].reason
    queued, _ = sync({}, [hurt, {**broken, "reasons": hurt["reasons"]}], "r1", "d")  # A was red on its AUC first
    after, ds2 = sync(queued, [broken], "r2", "d")  # then its feed broke: it leaves the queue
    assert "flights-late--A" not in after and [d.action for d in ds2] == ["withheld"]
    anyway, _ = sync({}, [broken], "r1", "d", retrain_when_data_broken=True)
    assert set(anyway) == {"flights-late--A"}


def cycle(store: QueueStore, fleet_run: dict[str, Any], budget: int, **kw: Any):  # type: ignore[no-untyped-def]
    spec = load_fleet()
    # A dry run never touches the registry, the log or the run store.
    return run_cycle(
        None,
        None,
        None,
        None,
        store,
        spec,
        fleet_run,
        FleetRetrainConfig(budget=budget),
        GateConfig(),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("budget", [0, 1, 2, 5])
def test_a_cycle_retrains_the_k_best_and_carries_the_rest(tmp_path, budget: int) -> None:
    store = QueueStore(f"sqlite:///{tmp_path / 'q.db'}")
    impacts = {"A": 3.0, "B": 9.0, "C": 1.0, "D": 6.0}
    fr = run("r1", *[verdict(s, "red", x) for s, x in impacts.items()], verdict("E", "yellow", 4.0))
    res = cycle(store, fr, budget, dry_run=True)
    would = [d.segment for d in res.decisions if d.action == "retraining"]
    over = [d.segment for d in res.decisions if d.action == "over_budget"]
    assert would == ["B", "D", "A", "C"][:budget]
    assert over == ["B", "D", "A", "C"][budget:]
    assert all(f"budget {budget} per cycle" in d.reason for d in res.decisions if d.action == "over_budget")
    assert store.items("routes") == {} and store.cycles("routes") == []  # a dry run writes nothing


def test_the_queue_persists_without_duplicates(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    fr = run("r1", verdict("A", "red", 3.0), verdict("B", "red", 9.0))
    store = QueueStore(url)
    items, _ = sync(store.items("routes"), fr["verdicts"], "r1", "2013-05-31")
    store.save("routes", items)
    store.dispose()
    store = QueueStore(url)  # another process, the same file
    items2, ds = sync(store.items("routes"), fr["verdicts"], "r1", "2013-05-31")
    assert items2 == items and ds == []
    store.save("routes", items2)
    store.record_cycle("routes", "r1", "2013-05-31", 1, [])
    doc = queue_summary(url, "routes")
    assert [(i["rank"], i["segment"], i["state"]) for i in doc["items"]] == [(1, "B", "queued"), (2, "A", "queued")]
    assert doc["states"]["queued"] == 2 and doc["last_cycle"]["budget"] == 1
    assert set(doc["items"][0]) >= {"model", "colour", "gain_x_traffic", "traffic", "auc_loss", "state", "reason"}


def test_two_concurrent_cycles_never_retrain_the_same_model_at_once(tmp_path, monkeypatch) -> None:
    """Cron's `fleet retrain` and an operator's `fleet monitor --retrain` on the same fleet run:
    each red model is fitted by one cycle only; the other records it as locked and leaves its row."""
    import threading
    import time

    from training.fleet_retrain import SegmentRetrain

    url = f"sqlite:///{tmp_path / 'q.db'}"
    fr = run("r1", verdict("A", "red", 3.0), verdict("B", "red", 9.0), verdict("C", "red", 5.0))
    active: dict[str, int] = {}
    fitted: list[str] = []
    overlap: list[str] = []
    guard = threading.Lock()

    def slow_retrain(*args: Any, model_name: str, **kw: Any) -> SegmentRetrain:
        with guard:
            active[model_name] = active.get(model_name, 0) + 1
            fitted.append(model_name)
            if active[model_name] > 1:
                overlap.append(model_name)
        time.sleep(0.3)  # long enough for the other cycle to reach the same model
        with guard:
            active[model_name] -= 1
        return SegmentRetrain(model_name, "refused", ["challenger lost the gate: test"], "1")

    monkeypatch.setattr("training.fleet_retrain.retrain_segment", slow_retrain)
    start = threading.Barrier(2, timeout=30)
    results: list[Any] = []

    def one_cycle() -> None:
        store = QueueStore(url)  # its own connection pool, as another process would have
        start.wait()
        results.append(cycle(store, fr, 3))
        store.dispose()

    threads = [threading.Thread(target=one_cycle) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2 and not overlap
    assert sorted(fitted) == ["flights-late--A", "flights-late--B", "flights-late--C"]  # each once
    acts = sorted((d.segment, d.action) for r in results for d in r.decisions if d.action in ("refused", "locked"))
    assert sorted(s for s, a in acts if a == "refused") == ["A", "B", "C"]
    assert all(
        "another retrain cycle" in d.reason for r in results for d in r.decisions if d.action == "locked"
    )  # the skipping cycle says why
    store = QueueStore(url)
    assert store.locks("routes") == {}  # every lock released
    assert {i.state for i in store.items("routes").values()} == {"refused"}


def test_a_lock_is_exclusive_released_by_its_holder_only_and_expires(tmp_path) -> None:
    from datetime import timedelta

    store = QueueStore(f"sqlite:///{tmp_path / 'q.db'}")
    assert store.lock("routes", "m", "cycle-1") == "cycle-1"
    assert store.lock("routes", "m", "cycle-2") is None
    store.unlock("routes", "m", "cycle-2")  # not its lock: nothing happens
    assert store.locks("routes") == {"m": "cycle-1"}
    assert store.lock("routes", "m", "cycle-3", lease=timedelta(0)) == "cycle-1"  # an expired lease is taken over
    assert store.locks("routes") == {"m": "cycle-3"}
    store.unlock("routes", "m", "cycle-3")
    assert store.locks("routes") == {}


def test_a_small_segments_retrain_windows_widen_until_they_hold_enough_labels() -> None:
    """A big route keeps 28 + 7 days; a small one doubles its held-back span, then its training
    span, up to 28 and 84 days; one too small even then gets the widest (and is refused by name)."""
    from datetime import date, timedelta

    from training.fleet_retrain import spans, widen_windows

    assert spans(7, 28) == [7, 14, 28] and spans(28, 84) == [28, 56, 84] and spans(7, 7) == [7]
    end = date(2013, 10, 31)
    config = FleetRetrainConfig(min_labels=300, min_holdout=100)

    def daily(n: int) -> dict[date, int]:
        return {end - timedelta(days=i): n for i in range(120)}

    assert widen_windows(config, end, daily(20)) == (7, 28)  # 140 held back, 560 to train on
    assert widen_windows(config, end, daily(8)) == (14, 56)  # 112 in 14 days; 224 in 28 < 300 <= 448
    assert widen_windows(config, end, daily(2)) == (28, 84)  # never enough: the widest, refused by name
    # only the segment's own days count: no rows before the last week means no wider training span helps
    recent = {end - timedelta(days=i): 50 for i in range(7)}
    assert widen_windows(config, end, recent) == (7, 84)


def test_two_cycles_starting_together_on_a_fresh_store_both_get_it(tmp_path) -> None:
    """Two processes' first QueueStore on the same new database: each creates the tables it finds
    missing, and losing the race for one is no error. (The old create-all, retried once, raised
    "table ... already exists" on about one fresh file in seven here; 50 files make that certain.)"""
    import threading

    from core.fleet_queue import QueueStore

    def open_store(url: str, start: threading.Barrier, errors: list[BaseException]) -> None:
        try:
            start.wait()
            QueueStore(url).engine.dispose()
        except BaseException as exc:  # the test reports whatever a thread raised
            errors.append(exc)

    for k in range(50):
        url = f"sqlite:///{tmp_path / f'q{k}.db'}"
        errors: list[BaseException] = []
        start = threading.Barrier(2, timeout=30)
        threads = [threading.Thread(target=open_store, args=(url, start, errors)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == [], (k, errors)
    assert QueueStore(url).locks("routes") == {}
