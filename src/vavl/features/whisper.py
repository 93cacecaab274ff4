"""Whisper's encoder in PyTorch, from the very weights CTranslate2 runs, to read any of its
blocks: the middle ones carry more of how something is said (prosody, voice quality) and less
of what is said than the last one, which Whisper trains for its decoder.

CTranslate2 gives only the encoder's final output; this reads its ``model.bin`` (the format
``ctranslate2.specs`` writes: a header, then each variable's name, shape, type and bytes) and
runs the same computation: two convolutions with GELU, sinusoidal positions, pre-norm blocks of
self-attention and a GELU feed-forward, and the final layer norm after the last block. With all
blocks it matches CTranslate2 to float16 rounding (tested).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor

from vavl.errors import WeightsError

# ctranslate2's DataType enum (include/ctranslate2/types.h), in order.
CT2_TYPES: tuple[type[np.generic] | None, ...] = (
    np.float32,
    np.int8,
    np.int16,
    np.int32,
    np.float16,
    None,  # bfloat16: not used by the converted Whisper models
)


def read_ctranslate2(path: Path, prefix: str = "") -> dict[str, NDArray[np.generic]]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (the
    prefix removed), as arrays."""

    def number(handle: BinaryIO, code: str) -> int:
        size = struct.calcsize(code)
        return int(struct.unpack(code, handle.read(size))[0])

    def text(handle: BinaryIO) -> str:
        return handle.read(number(handle, "H"))[:-1].decode("utf-8")

    variables: dict[str, NDArray[np.generic]] = {}
    with open(path, "rb") as handle:
        number(handle, "I")  # binary version
        text(handle)  # spec name
        number(handle, "I")  # spec revision
        for _ in range(number(handle, "I")):
            name = text(handle)
            shape = [number(handle, "I") for _ in range(number(handle, "B"))]
            kind = number(handle, "B")
            data = handle.read(number(handle, "I"))
            if not name.startswith(prefix):
                continue
            dtype = CT2_TYPES[kind] if kind < len(CT2_TYPES) else None
            if dtype is None:
                raise WeightsError(f"{path}: variable {name} has an unsupported type ({kind})")
            variables[name.removeprefix(prefix)] = np.frombuffer(data, dtype).reshape(shape)
    return variables


class WhisperEncoder:
    """The encoder of a CTranslate2 Whisper model, run by PyTorch, up to a given block."""

    def __init__(self, model_dir: Path) -> None:
        saved = read_ctranslate2(model_dir / "model.bin", "encoder/")
        if "conv1/weight" not in saved:
            raise WeightsError(f"{model_dir}: no Whisper encoder in model.bin")
        self.heads = int(saved.pop("num_heads"))
        self.weights: dict[str, Tensor] = {
            name: torch.from_numpy(value.astype(np.float32)) for name, value in saved.items()
        }
        self.blocks = sum(1 for name in self.weights if name.endswith("ffn/linear_0/weight"))

    def _norm(self, x: Tensor, name: str) -> Tensor:
        w = self.weights
        return F.layer_norm(x, (x.shape[-1],), w[f"{name}/gamma"], w[f"{name}/beta"], 1e-5)

    def _linear(self, x: Tensor, name: str) -> Tensor:
        return F.linear(x, self.weights[f"{name}/weight"], self.weights[f"{name}/bias"])

    @torch.inference_mode()
    def __call__(self, mel: Tensor, blocks: int) -> Tensor:
        """(batch, frames / 2, dim) after ``blocks`` blocks of a (batch, n_mels, frames) log-mel;
        after all of them, with the final norm (what CTranslate2 gives)."""
        w = self.weights
        x = F.gelu(F.conv1d(mel, w["conv1/weight"], w["conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1))
        x = x.transpose(1, 2) + w["position_encodings/encodings"][: x.shape[2]]
        batch, time, dim = x.shape
        for block in range(blocks):
            name = f"layer_{block}"
            attended = self._attention(x, name, batch, time, dim)
            x = x + self._linear(attended, f"{name}/self_attention/linear_1")
            h = self._norm(x, f"{name}/ffn/layer_norm")
            h = F.gelu(self._linear(h, f"{name}/ffn/linear_0"))
            x = x + self._linear(h, f"{name}/ffn/linear_1")
        return self._norm(x, "layer_norm") if blocks == self.blocks else x

    def _attention(self, x: Tensor, name: str, batch: int, time: int, dim: int) -> Tensor:
        h = self._norm(x, f"{name}/self_attention/layer_norm")
        qkv = self._linear(h, f"{name}/self_attention/linear_0")
        query, key, value = qkv.view(batch, time, 3, self.heads, dim // self.heads).permute(
            2, 0, 3, 1, 4
        )
        attended = F.scaled_dot_product_attention(query, key, value)
        return attended.transpose(1, 2).reshape(batch, time, dim)
