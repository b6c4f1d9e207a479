from __future__ import annotations

import signal

from delta.service import Signals


def test_first_signal_stops_second_sigint_exits_at_once() -> None:
    stops: list[bool] = []
    exits: list[int] = []
    handler = Signals(lambda: stops.append(True), exits.append)
    handler(signal.SIGTERM)
    assert stops == [True] and exits == []
    handler(signal.SIGTERM)
    assert exits == []
    handler(signal.SIGINT)
    assert exits == [130]


def test_first_sigint_only_stops() -> None:
    stops: list[bool] = []
    exits: list[int] = []
    Signals(lambda: stops.append(True), exits.append)(signal.SIGINT)
    assert stops == [True] and exits == []
