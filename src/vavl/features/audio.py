"""Acoustic frame-level extractors: Whisper encoders (weights shipped in registry packages),
log-mel (no weights) and the reference's wav2vec2 (weights the user has locally)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from vavl.errors import ConfigError, WeightsError
from vavl.features.base import AudioExtractor, FloatArray, register
from vavl.features.whisper_weights import WhisperVariant, whisper_model_dir
from vavl.files import sha256_file
from vavl.media import SAMPLE_RATE

if TYPE_CHECKING:
    from vavl.features.whisper import WhisperEncoder

WHISPER_WINDOW_SECONDS = 30
WHISPER_HOP = 160  # log-mel hop: 10 ms
WHISPER_FRAME_SAMPLES = 320  # encoder output: one frame per 20 ms
WHISPER_BATCH = 16  # waveforms per encoder call


def _hz_to_mel(frequency: NDArray[np.float64]) -> NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    linear = frequency / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(frequency, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(frequency >= 1000.0, log_part, linear)


def _mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@cache
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> NDArray[np.float64]:
    """(n_mels, n_fft // 2 + 1) triangular filters on the Slaney mel scale, area-normalised."""
    fft_frequencies = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    spacing = np.diff(edges)
    ramps = edges[:, None] - fft_frequencies[None, :]
    lower = -ramps[:-2] / spacing[:-1, None]
    upper = ramps[2:] / spacing[1:, None]
    filters = np.maximum(0.0, np.minimum(lower, upper))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def power_spectrogram(waveform: FloatArray, n_fft: int, hop: int) -> NDArray[np.float64]:
    """|STFT|^2 with a periodic Hann window, centred frames (reflect padding): (frames, bins)."""
    padded = np.pad(waveform.astype(np.float64), n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2


def whisper_log_mel(waveform: FloatArray, n_mels: int = 80, frames: int = 3000) -> FloatArray:
    """Whisper's input: the first ``frames`` (n_mels, frames) of the log-mel of the waveform
    padded or cut to 30 s. Each mel frame sees only its own 25 ms, so only the frames that reach
    the audio are computed (plus the ones needed for the level clamp): the same values as the
    whole 30 s at a fraction of the cost for a short clip."""
    samples = WHISPER_WINDOW_SECONDS * SAMPLE_RATE
    audio = min(len(waveform), samples)
    # Frames beyond these see only the zero padding (log10(1e-10)), never above the clamp's max.
    computed = min(3000, max(frames, math.ceil(audio / WHISPER_HOP) + 3))
    window = np.zeros(min(samples, computed * WHISPER_HOP + 400), dtype=np.float32)
    window[:audio] = waveform[:audio]
    power = power_spectrogram(window, n_fft=400, hop=WHISPER_HOP)[:computed]
    mel = mel_filterbank(SAMPLE_RATE, 400, n_mels) @ power.T
    log_mel = np.full((n_mels, max(frames, computed)), -10.0)  # log10 of the floor, 1e-10
    log_mel[:, :computed] = np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel[:, :frames], log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)


@register("logmel", "audio", "log-mel filterbank energies, 80-d at 50 frames/s; no weights")
class LogMelExtractor(AudioExtractor):
    id = "logmel"
    version = "1"

    def __init__(
        self, n_mels: int = 80, frame_rate: float = 50.0, speech_floor_db: float | None = None
    ) -> None:
        self.set_speech_floor(speech_floor_db)
        self.dim = n_mels
        self.frame_rate = frame_rate
        self.hop = round(SAMPLE_RATE / frame_rate)

    def settings(self) -> dict[str, Any]:
        return {"n_mels": self.dim, "frame_rate": self.frame_rate, **self.speech_settings()}

    def extract(self, waveform: FloatArray) -> FloatArray:
        frames = math.ceil(len(waveform) / self.hop)
        if frames == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(waveform) < 2 * self.hop:  # reflect padding needs a few samples
            waveform = np.pad(waveform, (0, 2 * self.hop - len(waveform)))
        power = power_spectrogram(waveform, n_fft=2 * self.hop, hop=self.hop)[:frames]
        mel = power @ mel_filterbank(SAMPLE_RATE, 2 * self.hop, self.dim).T
        return np.log(mel + 1e-6).astype(np.float32)


WHISPER_DIMS: dict[WhisperVariant, int] = {"tiny.en": 384, "base": 512}


class WhisperEncoderExtractor(AudioExtractor):
    """The encoder of a Whisper model: one frame per 20 ms (``pool`` of them averaged into
    one), from 30 s log-mel windows; the output of its last block (CTranslate2), or of an
    earlier one (``blocks``; PyTorch, from the same weights)."""

    version = "1"
    chunk_seconds = float(WHISPER_WINDOW_SECONDS)
    variant: WhisperVariant
    total_blocks: int

    def __init__(
        self,
        window: Literal["full", "fit"] = "fit",
        compute_type: str = "float32",
        threads: int = 1,
        speech_floor_db: float | None = None,
        blocks: int | None = None,
        pool: int = 1,
        model_dir: str | None = None,
    ) -> None:
        self.set_speech_floor(speech_floor_db)
        if window not in ("full", "fit"):
            raise ConfigError(f"Whisper window must be 'full' or 'fit', not '{window}'")
        # "full": every chunk padded to Whisper's 30 s window (as in training); "fit": the window
        # cut to the audio, about 10x cheaper on 3 s clips.
        self.window = window
        self.compute_type = compute_type
        self.dim = WHISPER_DIMS[self.variant]
        self.blocks = self.total_blocks if blocks is None else _whole_number("blocks", blocks)
        if not 1 <= self.blocks <= self.total_blocks:
            raise ConfigError(
                f"{self.id} has {self.total_blocks} encoder blocks; blocks must be 1 to "
                f"{self.total_blocks}, not {blocks}"
            )
        self.pool = _whole_number("pool", pool)
        self.frame_rate = 50.0 / self.pool
        # Where the weights come from is not a setting: every source is checked to hold the
        # same files, so the features (and their store key) are the same.
        weights = whisper_model_dir(self.variant, model_dir)
        self.torch_encoder: WhisperEncoder | None = None
        if self.blocks < self.total_blocks:
            from vavl.features.whisper import WhisperEncoder

            self.torch_encoder = WhisperEncoder(weights)
            return
        try:
            import ctranslate2
        except ImportError:
            raise WeightsError(
                "the Whisper extractors need CTranslate2: pip install ctranslate2"
            ) from None
        self._ctranslate2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            str(weights), device="cpu", compute_type=compute_type, intra_threads=threads
        )

    def settings(self) -> dict[str, Any]:
        # Only what differs from the defaults, so that features made before these options
        # existed keep their store key.
        chosen: dict[str, Any] = {"window": self.window, "compute_type": self.compute_type}
        if self.blocks != self.total_blocks:
            chosen["blocks"] = self.blocks
        if self.pool != 1:
            chosen["pool"] = self.pool
        return chosen | self.speech_settings()

    def extract(self, waveform: FloatArray) -> FloatArray:
        return self.extract_batch([waveform])[0]

    def extract_batch(self, waveforms: Sequence[FloatArray]) -> list[FloatArray]:
        """Waveforms of the same length share one call of the encoder (no padding between
        them, so each gets what it would alone; several at once cost less than one by one)."""
        frames = [math.ceil(len(waveform) / WHISPER_FRAME_SAMPLES) for waveform in waveforms]
        results: list[FloatArray] = [np.zeros((0, self.dim), np.float32)] * len(waveforms)
        groups: dict[int, list[int]] = {}
        for index, count in enumerate(frames):
            groups.setdefault(count, []).append(index)
        for count, indices in groups.items():
            mel_frames = 3000 if self.window == "full" else min(3000, 2 * max(count, 1))
            for start in range(0, len(indices), WHISPER_BATCH):
                chosen = indices[start : start + WHISPER_BATCH]
                mel = np.stack([whisper_log_mel(waveforms[i], frames=mel_frames) for i in chosen])
                encoded = self._encode(np.ascontiguousarray(mel))
                for row, index in enumerate(chosen):
                    results[index] = self._pooled(encoded[row, :count])
        return results

    def _encode(self, mel: NDArray[np.float32]) -> NDArray[np.float32]:
        if self.torch_encoder is not None:
            import torch

            return self.torch_encoder(torch.from_numpy(mel), self.blocks).numpy()
        view = self._ctranslate2.StorageView.from_array(mel)
        return np.asarray(self.model.encode(view, to_cpu=True), dtype=np.float32)

    def _pooled(self, frames: FloatArray) -> FloatArray:
        """The mean of every ``pool`` consecutive frames (the last group may be shorter)."""
        if self.pool == 1 or not len(frames):
            return frames
        starts = np.arange(0, len(frames), self.pool)
        return (
            np.add.reduceat(frames, starts, axis=0) / np.diff([*starts, len(frames)])[:, None]
        ).astype(np.float32)


def _whole_number(name: str, value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != int(value)
        or value < 1
    ):
        raise ConfigError(f"{name} must be a whole number above 0, not {value!r}")
    return int(value)


@register(
    "whisper-base", "audio", "Whisper base encoder, 512-d at 50 frames/s (CTranslate2)", dim=512
)
class WhisperBaseExtractor(WhisperEncoderExtractor):
    id = "whisper-base"
    variant = "base"
    total_blocks = 6


@register(
    "whisper-tiny", "audio", "Whisper tiny.en encoder, 384-d at 50 frames/s (CTranslate2)", dim=384
)
class WhisperTinyExtractor(WhisperEncoderExtractor):
    id = "whisper-tiny"
    variant = "tiny.en"
    total_blocks = 4


@register("wav2vec2", "audio", "the reference's wav2vec2 (local checkpoint), pruned, 1024-d")
class Wav2Vec2Extractor(AudioExtractor):
    """``transformers`` Wav2Vec2Model from a local folder, keeping its first ``layers`` layers.

    The reference used wav2vec2-large-robust with its top 12 of 24 layers removed (1024-d at
    50 frames/s). Point ``model_dir`` at a folder written by ``save_pretrained``.
    """

    id = "wav2vec2"
    version = "1"
    frame_rate = 50.0
    chunk_seconds = 20.0

    def __init__(
        self,
        model_dir: str | Path,
        layers: int = 12,
        device: str = "cpu",
        speech_floor_db: float | None = None,
    ) -> None:
        self.set_speech_floor(speech_floor_db)
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise WeightsError(
                f"{model_dir}: no wav2vec2 checkpoint here (config.json and weights written by "
                "save_pretrained); on a machine with internet, `huggingface-cli download "
                "facebook/wav2vec2-large-robust --local-dir DIR`, copy DIR to this machine and set "
                "features.audio_options.model_dir=DIR"
            )
        try:
            import torch
            from transformers import Wav2Vec2Model
            from transformers.utils import logging as transformers_logging
        except ImportError:
            raise WeightsError(
                "the wav2vec2 extractor needs transformers: pip install 'vavl[wav2vec2]'"
            ) from None
        self._torch = torch
        transformers_logging.disable_progress_bar()
        model = Wav2Vec2Model.from_pretrained(str(model_dir))
        available = len(model.encoder.layers)
        if not 1 <= layers <= available:
            raise ConfigError(f"{model_dir}: has {available} layers; cannot keep {layers}")
        model.encoder.layers = model.encoder.layers[:layers]
        model.config.num_hidden_layers = layers
        self.model = model.eval().to(device)
        self.device = device
        self.model_dir = model_dir
        self.layers = layers
        self.dim = int(model.config.hidden_size)
        # Features are keyed by the weights themselves, not by where they happen to lie.
        weight_files = sorted(
            p for p in model_dir.iterdir() if p.suffix in (".bin", ".safetensors", ".pt")
        )
        self.weights_sha256 = "+".join(sha256_file(p)[:16] for p in weight_files)

    def settings(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "weights_sha256": self.weights_sha256,
            **self.speech_settings(),
        }

    def extract(self, waveform: FloatArray) -> FloatArray:
        torch = self._torch
        if len(waveform) < 400:  # the convolutional front end needs one 25 ms window
            waveform = np.pad(waveform, (0, 400 - len(waveform)))
        normalised = (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-7)
        with torch.inference_mode():
            inputs = torch.from_numpy(normalised.astype(np.float32))[None].to(self.device)
            hidden = self.model(inputs).last_hidden_state[0]
        return hidden.float().cpu().numpy()
