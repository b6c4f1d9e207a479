"""Delta's exceptions: each message tells the user what was wrong and what to do about it."""

from __future__ import annotations

__all__ = ["ConfigError", "DeltaError", "EventError", "SpecError"]


class DeltaError(Exception):
    """Base of every error Delta raises on purpose."""


class ConfigError(DeltaError):
    """An invalid configuration value; the message names the key, the value and what is allowed."""


class SpecError(DeltaError):
    """A model spec the safe parser refuses; the message quotes the offending part."""


class EventError(DeltaError):
    """A Kafka message that is not a valid Delta event; the message is the dead-letter reason."""
