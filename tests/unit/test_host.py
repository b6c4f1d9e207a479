from __future__ import annotations

import itertools
import math

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, tree, utils

from delta.errors import ConfigError, EventError, SpecError
from delta.events import PredictEvent, TrainEvent
from delta.host import ModelHost


def test_progressive_metrics_equal_river_on_phishing() -> None:
    data = list(datasets.Phishing())
    host = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()")
    for x, y in data:
        host.learn(TrainEvent(None, x, y))
    expected = metrics.Accuracy() + metrics.F1() + metrics.ROCAUC() + metrics.LogLoss()
    evaluate.progressive_val_score(data, preprocessing.StandardScaler() | linear_model.LogisticRegression(), expected)
    got = host.report()
    assert got["events"]["trained"] == 1250
    for metric in expected:
        assert got["metrics"][type(metric).__name__] == pytest.approx(metric.get(), abs=1e-12, rel=0)


def test_rolling_metrics_equal_river_rolling() -> None:
    data = list(datasets.Phishing())
    host = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()", ("Accuracy",), window=100)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    rolling = utils.Rolling(metrics.Accuracy, window_size=100)
    for x, y in data:
        host.learn(TrainEvent(None, x, y))
        rolling.update(y, model.predict_one(x))
        model.learn_one(x, y)
    assert host.report()["rolling"]["Accuracy"] == rolling.get()


def test_progressive_metrics_equal_river_for_a_regressor_tree() -> None:
    data = list(itertools.islice(datasets.TrumpApproval(), 600))
    host = ModelHost("tree.HoeffdingTreeRegressor(grace_period=50)")
    for x, y in data:
        host.learn(TrainEvent(None, x, y))
    expected = metrics.MAE() + metrics.RMSE() + metrics.R2()
    evaluate.progressive_val_score(data, tree.HoeffdingTreeRegressor(grace_period=50), expected)
    for metric in expected:
        assert host.report()["metrics"][type(metric).__name__] == pytest.approx(metric.get(), abs=1e-12, rel=0)
    assert host.task == "regression"


def test_predictions_carry_version_and_proba_summing_to_one() -> None:
    host = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()")
    for x, y in itertools.islice(datasets.Phishing(), 200):
        host.learn(TrainEvent(None, x, y))
    x, _ = next(iter(datasets.Phishing()))
    p = host.predict(PredictEvent("p-1", x), ts=5)
    assert p.id == "p-1" and p.model_version == 1 and p.ts == 5
    assert p.proba is not None and math.isclose(sum(p.proba.values()), 1.0)
    assert p.y_pred == max(p.proba, key=p.proba.get)


def test_delayed_label_joins_the_published_prediction() -> None:
    host = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()", max_pending=2)
    rows = list(itertools.islice(datasets.Phishing(), 50))
    for x, y in rows[:40]:
        host.learn(TrainEvent(None, x, y))
    published = host.predict(PredictEvent("p-17", rows[40][0]), ts=0)
    before = host.report()
    host.learn(TrainEvent("p-17", None, rows[40][1]))
    after = host.report()
    assert after["events"]["labels_joined"] == 1
    assert after["events"]["trained"] == before["events"]["trained"] + 1
    assert published.y_pred is not None
    with pytest.raises(EventError, match='no earlier prediction event to join'):
        host.learn(TrainEvent("p-17", None, True))
    host.predict(PredictEvent("a", rows[41][0]), 0)
    host.predict(PredictEvent("b", rows[42][0]), 0)
    host.predict(PredictEvent("c", rows[43][0]), 0)
    with pytest.raises(EventError):
        host.learn(TrainEvent("a", None, True))  # forgotten: only the newest two are kept
    host.learn(TrainEvent("c", None, True))


def test_replace_bumps_version_restarts_metrics_keeps_history() -> None:
    host = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()")
    for x, y in itertools.islice(datasets.Phishing(), 100):
        host.learn(TrainEvent(None, x, y))
    old_accuracy = host.report()["metrics"]["Accuracy"]
    assert host.replace("preprocessing.StandardScaler() | linear_model.Perceptron()") == 2
    described = host.describe()
    assert described["name"] == "Perceptron" and described["trained"] == 0
    assert described["history"][0]["version"] == 1
    assert described["history"][0]["metrics"]["Accuracy"] == old_accuracy
    assert host.report()["events"]["trained"] == 100
    assert host.report()["metrics"]["Accuracy"] == 0.0
    with pytest.raises(SpecError):
        host.replace("__import__('os')")
    assert host.version == 2


def test_metrics_must_suit_the_model() -> None:
    with pytest.raises(ConfigError, match="MAE does not work with LogisticRegression"):
        ModelHost("linear_model.LogisticRegression()", ("MAE",))
    with pytest.raises(ConfigError, match="neither a classifier nor a regressor"):
        ModelHost("preprocessing.StandardScaler()")


def test_held_label_is_learned_when_its_prediction_arrives_or_expires() -> None:
    from delta.events import Incoming

    host = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()")
    rows = list(itertools.islice(datasets.Phishing(), 3))
    sources = [Incoming("train", 0, i, None, b"{}") for i in range(3)]
    host.hold("a", rows[0][1], now=10.0, source=sources[0])
    host.hold("b", rows[1][1], now=11.0, source=sources[1])
    with pytest.raises(EventError, match="already waiting"):
        host.hold("a", True, now=12.0, source=sources[2])
    host.hold("a", rows[0][1], now=12.0, source=sources[0])  # the same message read again
    host.predict(PredictEvent("a", rows[0][0]), 0)
    assert host.release("a") is sources[0]
    assert host.report()["events"] == {"trained": 1, "predicted": 1, "invalid": 0, "labels_joined": 1,
                                       "labels_waiting": 1}
    assert host.expire(before=11.0, limit=10) == []
    assert host.expire(before=11.5, limit=10) == [("b", sources[1])]
    host.hold("c", True, now=20.0, source=sources[2])
    host.hold("d", True, now=20.0, source=sources[2])
    assert [i for i, _ in host.expire(before=0.0, limit=1)] == ["c"]
    host.forget_waiting({("train", 1)})
    assert list(host.waiting) == ["d"]
    host.forget_waiting({("train", 0)})
    assert not host.waiting
