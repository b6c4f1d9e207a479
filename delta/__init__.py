"""Delta: a production worker for online machine learning.

Delta hosts one River model in a long-running process: it learns from labeled events on a Kafka training topic,
answers unlabeled events on a prediction topic, and reports through a management server. The package reads like the
data flow in DESIGN.md: ``events`` (decode/encode) -> ``host`` (predict, learn, metrics) -> ``worker`` (Kafka),
with ``spec`` (safe model specs), ``config`` and ``service``/``cli`` (wiring) around them.
"""

from __future__ import annotations

from delta.config import Config, load_config
from delta.errors import ConfigError, DeltaError, EventError, SpecError
from delta.host import ModelHost
from delta.spec import build

__all__ = ["Config", "ConfigError", "DeltaError", "EventError", "ModelHost", "SpecError", "__version__", "build",
           "load_config"]

__version__ = "0.1.0"
