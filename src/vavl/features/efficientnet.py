"""EfficientNet-B2 in plain PyTorch, with the parameter names of timm's ``efficientnet_b2``.

HSEmotion's ``enet_b2_8`` (the reference's visual features: 1408-d) is a timm EfficientNet-B2 with
an 8-class head. timm needs torchvision, which cannot be installed beside a CPU torch build, so
vavl builds the same network itself and loads the weights by name. HSEmotion distributes whole
pickled models; :func:`read_weights` reads their tensors without importing timm.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vavl.errors import WeightsError

WIDTH, DEPTH = 1.1, 1.2  # EfficientNet-B2's compound scaling of B0
# B0 stages: (block, repeats, kernel, stride, expansion, channels); SE ratio 0.25 everywhere.
B0_STAGES = [
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
]
FEATURES = 1408


def make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.conv_expand(torch.nn.functional.silu(self.conv_reduce(x.mean((2, 3), True))))
        return x * torch.sigmoid(scale)


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_ch, in_ch, kernel, stride, kernel // 2, groups=in_ch, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.se = SqueezeExcite(in_ch, round(in_ch * 0.25))
        self.conv_pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv_pw(self.se(torch.nn.functional.silu(self.bn1(self.conv_dw(x))))))
        return x + y if self.skip else y


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = make_divisible(in_ch * expansion)
        self.conv_pw = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, round(in_ch * 0.25))  # SE width from the block's input
        self.conv_pwl = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        silu = torch.nn.functional.silu
        y = silu(self.bn1(self.conv_pw(x)))
        y = self.se(silu(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.skip else y


class EfficientNetB2(nn.Module):
    """Images (batch, 3, H, W), ImageNet-normalised -> pooled 1408-d features (or class logits)."""

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__()
        stem = make_divisible(32 * WIDTH)
        self.conv_stem = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        stages: list[nn.Module] = []
        in_ch = stem
        for block, repeats, kernel, stride, expansion, channels in B0_STAGES:
            out_ch = make_divisible(channels * WIDTH)
            blocks: list[nn.Module] = []
            for index in range(math.ceil(repeats * DEPTH)):
                step = stride if index == 0 else 1
                if block == "ds":
                    blocks.append(DepthwiseSeparable(in_ch, out_ch, kernel, step))
                else:
                    blocks.append(InvertedResidual(in_ch, out_ch, kernel, step, expansion))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(in_ch, FEATURES, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(FEATURES)
        self.classifier = nn.Linear(FEATURES, num_classes)

    def features(self, images: Tensor) -> Tensor:
        silu = torch.nn.functional.silu
        x = self.blocks(silu(self.bn1(self.conv_stem(images))))
        return silu(self.bn2(self.conv_head(x))).mean((2, 3))

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))


class _AnyObject:
    """Stands in for a class we do not import (timm's modules): keeps the pickled attributes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; any other class becomes an inert _AnyObject."""

    TRUSTED: ClassVar[set[tuple[str, str]]] = {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch", "FloatStorage"),
        ("torch", "HalfStorage"),
        ("torch", "LongStorage"),
        ("torch", "BoolStorage"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch.storage", "UntypedStorage"),
        ("torch", "float32"),
        ("builtins", "set"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.TRUSTED:
            return super().find_class(module, name)
        return _AnyObject


def _collect(module: Any, prefix: str, into: dict[str, Tensor]) -> None:
    attributes = getattr(module, "__dict__", {})
    for group in ("_parameters", "_buffers"):
        for name, value in (attributes.get(group) or {}).items():
            if isinstance(value, Tensor):
                into[f"{prefix}{name}"] = value.detach()
    for name, child in (attributes.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", into)


def read_weights(path: Path) -> dict[str, Tensor]:
    """Tensors by name from a state dict (.pt/.pth/.safetensors) or a pickled timm model."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError):
        # A whole pickled model (HSEmotion's files): read its tensors, run none of its code.
        restricted = SimpleNamespace(
            Unpickler=_RestrictedUnpickler, load=pickle.load, __name__="restricted_pickle"
        )
        try:
            loaded = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=restricted
            )
        except Exception as error:
            raise WeightsError(f"{path}: cannot read EfficientNet weights ({error})") from None
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if isinstance(loaded, dict):
        tensors = {k: v for k, v in loaded.items() if isinstance(v, Tensor)}
    else:
        tensors = {}
        _collect(loaded, "", tensors)
    # Wrappers such as DataParallel prefix every name.
    for prefix in ("module.", "model."):
        if tensors and all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix) :]: value for name, value in tensors.items()}
    return tensors


def load_efficientnet_b2(path: str | Path) -> EfficientNetB2:
    """An EfficientNet-B2 with the weights of ``path`` (any classifier size), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: EfficientNet-B2 weight file not found; get HSEmotion's enet_b2_8.pt "
            "(github.com/HSE-asavchenko/face-emotion-recognition, models/affectnet_emotions) "
            "and set features.visual_options.weights=FILE"
        )
    tensors = read_weights(path)
    classes = tensors["classifier.weight"].shape[0] if "classifier.weight" in tensors else 8
    model = EfficientNetB2(num_classes=classes)
    expected = model.state_dict()
    missing = [name for name in expected if name not in tensors and "num_batches" not in name]
    if missing:
        raise WeightsError(
            f"{path}: not an EfficientNet-B2 checkpoint ({len(missing)} tensors missing, "
            f"e.g. {missing[0]})"
        )
    wrong = [n for n in expected if n in tensors and tensors[n].shape != expected[n].shape]
    if wrong:
        raise WeightsError(
            f"{path}: tensor {wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, "
            f"expected {tuple(expected[wrong[0]].shape)} for EfficientNet-B2"
        )
    model.load_state_dict({n: tensors[n] for n in expected if n in tensors}, strict=False)
    return model.eval()
