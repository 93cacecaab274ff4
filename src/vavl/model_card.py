"""The default model that ships inside the package, and its card: what it learned from, how it
scores on speakers it never heard or saw (beside two references on the same clips), and the
licence terms it inherits. ``benchmarks/default_model.py --card`` writes the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default-model.pt"
DEFAULT_MODEL_CARD = DEFAULT_MODEL.with_suffix(".json")


def default_model_card() -> dict[str, Any]:
    """What the default model was trained on, its held-out scores and its licence terms."""
    return dict(json.loads(DEFAULT_MODEL_CARD.read_text()))


def preload_default_extractors() -> None:
    """Start loading the default model's extractors (named in its card) in the background, so
    that their weights load while torch is imported and the checkpoint read."""
    from vavl.features import preload_extractor
    from vavl.features.base import ExtractorDescription

    for modality, saved in default_model_card()["extractors"].items():
        description = ExtractorDescription.from_saved(saved)
        preload_extractor(description.id, modality, **(description.options or {}))


def card_lines(card: dict[str, Any]) -> list[str]:
    """The default model's card as text: data, the cross-corpus table (corpora left out of
    training, beside a linear probe), the in-corpus table with its references, the notice."""
    lines = [f"trained on: {card['trained_on']}", f"held out: {card['held_out_speakers']}"]
    cross = card.get("cross_corpus")
    if cross:
        lines += ["", "left out of training (the recipe trained on the other corpora):"]
        lines += _table(
            ("left-out corpus", "path", "clips", "UA", "most predicted", "probe UA"),
            [
                (
                    entry["corpus"],
                    entry["path"],
                    str(entry["clips"]),
                    f"{entry['ua']:.3f}",
                    f"{entry['top_class']} {entry['top_class_share']:.0%}",
                    f"{entry['probe_ua']:.3f}" if "probe_ua" in entry else "",
                )
                for entry in cross["folds"]
            ],
        )
        if cross.get("photos"):
            lines += ["", "their faces as photos (automatic detection), beside fer's classifier:"]
            lines += _table(
                ("left-out corpus", "photos", "UA", "most predicted", "fer UA"),
                [
                    (
                        entry["corpus"],
                        str(entry["photos"]),
                        f"{entry['ua']:.3f}",
                        f"{entry['top_class']} {entry['top_class_share']:.0%}",
                        f"{entry['fer_ua']:.3f}",
                    )
                    for entry in cross["photos"]
                ],
            )
    lines += ["", "held out of the shipped model's training:"]
    lines += _table(
        ("held-out set", "path", "clips", "acc", "UA", "most predicted", "probe UA", "fer UA"),
        [
            (
                entry["set"],
                entry["path"],
                str(entry["clips"]),
                f"{entry['accuracy']:.3f}",
                f"{entry['ua']:.3f}",
                f"{_top(entry['predicted'])} {entry['top_class_share']:.0%}",
                f"{entry['probe_ua']:.3f}" if "probe_ua" in entry else "",
                f"{entry['fer_ua']:.3f}" if "fer_ua" in entry else "",
            )
            for entry in card["held_out"]
        ],
    )
    lines += ["", f"made by: {card['command']}", card["notice"]]
    return lines


def _top(shares: dict[str, float]) -> str:
    return max(shares, key=lambda name: shares[name])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as aligned text columns under a header and a rule."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = []
    for number, cells in enumerate((header, *rows)):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
