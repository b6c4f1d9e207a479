from __future__ import annotations

import pytest

from delta.errors import EventError
from delta.events import PredictEvent, Prediction, TrainEvent, decode_predict, decode_train, encode_prediction, loads


def test_train_event_decodes_to_plain_frozen_data() -> None:
    ev = decode_train(b'{"id": "e-1", "x": {"amount": 12.5, "country": "FR", "gone": null, "vip": true}, "y": true}',
                      "classification")
    assert ev == TrainEvent("e-1", {"amount": 12.5, "country": "FR", "vip": True}, True)
    with pytest.raises(AttributeError):
        ev.y = False  # type: ignore[misc]


def test_label_only_event_and_integer_id() -> None:
    assert decode_train(b'{"id": "p-17", "y": "spam"}', "classification") == TrainEvent("p-17", None, "spam")
    assert decode_train(b'{"id": 17, "x": {}, "y": 2.5}', "regression") == TrainEvent("17", {}, 2.5)


def test_predict_event_id_defaults() -> None:
    assert decode_predict(b'{"x": {"a": 1}}', "key-or-coords") == PredictEvent("key-or-coords", {"a": 1})
    assert decode_predict(b'{"id": "p-1", "x": {"a": 1}}', "k") == PredictEvent("p-1", {"a": 1})


BAD_TRAIN = [
    (b"not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (None, "empty message value"),
    (b"[1, 2]", "expected a JSON object, got an array"),
    (b'"text"', "expected a JSON object, got a string"),
    (b'{"x": [1, 2], "y": true}', '"x" must be an object'),
    (b'{"x": {"a": 1}}', 'no label "y"'),
    (b'{"x": {"a": 1}, "y": null}', 'no label "y"'),
    (b'{"x": {"a": 1}, "y": 0.5}', "a classifier takes a boolean, integer or string label"),
    (b'{"x": {"a": 1}, "y": {"k": 1}}', "a classifier takes"),
    (b'{"x": {"a": 1e999}, "y": true}', "non-finite number"),
    (b'{"x": {"a": NaN}, "y": true}', "non-finite number"),
    (b'{"x": {"a": Infinity}, "y": true}', "non-finite number"),
    (b'{"x": {"a": [1]}, "y": true}', 'feature "a" is an array'),
    (b'{"x": {"a": {"b": 1}}, "y": true}', 'feature "a" is an object'),
    (b'{"id": [1], "x": {}, "y": true}', '"id" must be a string or an integer'),
    (b'{"y": true}', 'neither "x" nor an "id"'),
    (b'\xff\xfe{"x": {}}', "not valid JSON"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_TRAIN)
def test_bad_training_input_has_a_precise_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(EventError, match=None) as info:
        decode_train(value, "classification")
    assert reason in str(info.value)


def test_regression_labels() -> None:
    assert decode_train(b'{"x": {}, "y": 3}', "regression").y == 3
    for bad in (b'{"x": {}, "y": true}', b'{"x": {}, "y": "3"}'):
        with pytest.raises(EventError, match="a regressor takes a finite number"):
            decode_train(bad, "regression")


def test_size_limit() -> None:
    big = b'{"x": {"a": "' + b"z" * 200 + b'"}, "y": true}'
    with pytest.raises(EventError, match="over the limit of 100"):
        decode_train(big, "classification", max_bytes=100)


def test_predict_needs_features() -> None:
    with pytest.raises(EventError, match='no features "x"'):
        decode_predict(b'{"id": "p"}', "k")


def test_prediction_encoding_matches_the_contract() -> None:
    raw = encode_prediction(Prediction("p-17", True, {True: 0.91, False: 0.09}, 3, 1733300000123))
    assert raw == b'{"id":"p-17","y_pred":true,"proba":{"true":0.91,"false":0.09},"model_version":3,"ts":1733300000123}'
    reg = loads(encode_prediction(Prediction("r", 2.5, None, 1, 5)))
    assert reg == {"id": "r", "y_pred": 2.5, "model_version": 1, "ts": 5}
