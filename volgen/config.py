"""Dataclass configs that go to and from plain dicts (config.json, YAML), refusing keys they do not know."""
from __future__ import annotations

from dataclasses import asdict, fields


class DictConfig:
    """Mixin for dataclasses: `to_dict()` gives JSON-ready values, `from_dict()` names any unknown key."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**data)
