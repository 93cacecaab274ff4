"""A thin wrapper around the LiteRT (TensorFlow Lite) interpreter, without TensorFlow."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vavl.errors import WeightsError


@contextlib.contextmanager
def _silenced_native_stderr() -> Iterator[None]:
    """Hide what native code prints on file descriptor 2 (LiteRT announces its delegate there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TFLiteModel:
    """Runs a .tflite file on one input tensor (the batch size may change between calls)."""

    def __init__(self, path: Path, threads: int = 1, keep_inner_tensors: bool = False) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise WeightsError(
                f"{path}: needs the LiteRT runtime; run `pip install ai-edge-litert`"
            ) from None
        with warnings.catch_warnings(), _silenced_native_stderr():
            # Reading inner tensors is what we want; the runtime warns that it costs memory.
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter: Any = Interpreter(
                model_path=str(path),
                num_threads=threads,
                experimental_preserve_all_tensors=keep_inner_tensors,
            )
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.tensor_index = {d["name"]: d["index"] for d in self.interpreter.get_tensor_details()}
        self.path = path

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.input["shape"])

    def __call__(self, inputs: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        if tuple(inputs.shape) != self.input_shape:
            self.interpreter.resize_tensor_input(self.input["index"], list(inputs.shape))
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
        self.interpreter.set_tensor(self.input["index"], inputs.astype(np.float32, copy=False))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(output["index"]) for output in self.outputs]

    def inner_tensor(self, name: str) -> NDArray[np.float32]:
        """An intermediate tensor of the last call (needs ``keep_inner_tensors=True``)."""
        if name not in self.tensor_index:
            raise WeightsError(f"{self.path}: has no tensor named '{name}'")
        return np.asarray(self.interpreter.get_tensor(self.tensor_index[name]), dtype=np.float32)
