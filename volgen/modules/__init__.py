"""Conditioning modules that steer a frozen backbone: VCM (ours), ControlNet and Concat (baselines)."""
from volgen.modules.base import Conditioner
from volgen.modules.concat import ConcatConditioner, ConcatConfig
from volgen.modules.controlnet import ControlNetConditioner, ControlNetConfig
from volgen.modules.vcm import VCM, VCMConfig

MODULES = {"vcm": (VCM, VCMConfig), "controlnet": (ControlNetConditioner, ControlNetConfig),
           "concat": (ConcatConditioner, ConcatConfig)}


def build_conditioner(kind: str, backbone, config: dict | None = None) -> Conditioner:
    if kind not in MODULES:
        raise ValueError(f"unknown conditioning module '{kind}' ({', '.join(MODULES)})")
    cls, config_cls = MODULES[kind]
    return cls(backbone, config_cls.from_dict(config or {}))


__all__ = ["MODULES", "VCM", "ConcatConditioner", "ConcatConfig", "Conditioner", "ControlNetConditioner",
           "ControlNetConfig", "VCMConfig", "build_conditioner"]
