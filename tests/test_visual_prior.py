"""The visual path's prior: fer's own classifier read from the features, corrected by training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import require_shared_data, small_model_config
from vavl.config_files import apply_overrides, load_config
from vavl.errors import ConfigError
from vavl.features import create_extractor
from vavl.features.visual import FER_CLASSES
from vavl.models import VAVL, build_model
from vavl.models.layers import masked_mean


def fer_stills(count: int) -> np.ndarray:
    folder = require_shared_data() / "fer2013-subset" / "test"
    paths = sorted(folder.rglob("*.jpg"))[:count]
    assert len(paths) == count, folder
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def test_fer_log_probabilities_are_its_classifier_after_its_features() -> None:
    faces = fer_stills(5)
    both = create_extractor("fer", output="features+log-probabilities").extract(faces)
    features = create_extractor("fer").extract(faces)
    probabilities = create_extractor("fer", output="probabilities").extract(faces)
    assert both.shape == (5, 128 + len(FER_CLASSES))
    np.testing.assert_allclose(both[:, :128], features, atol=1e-6)
    np.testing.assert_allclose(np.exp(both[:, 128:]), probabilities, atol=1e-5)
    assert probabilities.argmax(1).tolist() != [probabilities.argmax(1)[0]] * 5  # real answers


def prior_model(outputs: int = 3) -> VAVL:
    model = build_model(small_model_config(visual_prior=tuple(range(7, 7 + outputs))), outputs)
    assert isinstance(model, VAVL)
    return model.eval()


def test_an_untrained_path_answers_as_the_classifier_it_reads() -> None:
    torch.manual_seed(0)
    model = prior_model()
    visual = torch.randn(4, 9, 10)
    mask = torch.ones(4, 9, dtype=torch.bool)
    mask[1, 5:] = False  # padding must not count
    with torch.no_grad():
        output = model(visual=visual, visual_mask=mask).predictions["visual"]
    torch.testing.assert_close(output, masked_mean(visual[..., 7:10], mask))
    without = build_model(small_model_config(), 3).eval()
    with torch.no_grad():
        plain = without(visual=visual, visual_mask=mask).predictions["visual"]
    assert not torch.allclose(plain, masked_mean(visual[..., 7:10], mask), atol=1e-2)


def test_clips_without_a_face_get_no_visual_answer_beside_those_with_one() -> None:
    model = prior_model()
    visual, mask = torch.randn(3, 4, 10), torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False  # no face in the second clip
    with torch.no_grad():
        output = model(visual=visual, visual_mask=mask)
    assert output.present["visual"].tolist() == [True, False, True]
    answers = output.predictions["visual"]
    assert bool(answers[1].isnan().all()) and bool(answers[[0, 2]].isfinite().all())
    torch.testing.assert_close(answers[[0, 2]], visual[[0, 2]][..., 7:10].mean(1))


def test_the_visual_step_trains_the_prior_scale_and_the_head() -> None:
    model = prior_model().train()
    trained = {id(p) for module in model.step_modules("visual") for p in module.parameters()}
    assert id(model.visual_prior.scale) in trained  # type: ignore[union-attr]
    assert id(model.visual_prior.scale) not in {  # type: ignore[union-attr]
        id(p) for module in model.step_modules("audio") for p in module.parameters()
    }
    visual, mask = torch.randn(6, 5, 10), torch.ones(6, 5, dtype=torch.bool)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    embedding = model.encode("visual", visual, mask)
    loss = torch.nn.functional.cross_entropy(
        model.predict("visual", embedding, visual, mask), target
    )
    loss.backward()
    assert model.visual_prior.scale.grad is not None  # type: ignore[union-attr]
    assert float(model.visual_head.layers[-1].weight.grad.abs().sum()) > 0  # type: ignore[union-attr]


PLAIN_FER = [
    "features.visual_options={}",
    "model.visual_dim=128",
    "model.visual_prior=[1, 2, 3, 4, 5, 6]",
]
FACEMESH = ["features.visual=facemesh", "features.visual_options={}", "model.visual_dim=1404"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.visual_prior=[128, 129]"], "a column for each class"),
        (["model.visual_prior=[128, 129, 130, 131, 132, 200]"], "below visual_dim"),
        (["model.name=auxformer"], "a VAVL option"),
        (["task.kind=regression", "task.labels=[a, b, c, d, e, f]"], "classification"),
        (PLAIN_FER, "fer's output features\\+log-probabilities"),
        (FACEMESH, "fer's output features\\+log-probabilities"),
    ],
)
def test_a_prior_that_cannot_be_read_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        apply_overrides(load_config("default-model"), overrides)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["default-model", "cross-corpus-faces"])
def test_the_shipped_priors_read_each_label_from_fer(name: str) -> None:
    config = load_config(name)
    assert config.features.visual_options == {"output": "features+log-probabilities"}
    columns = [column - 128 for column in config.model.visual_prior]
    assert [FER_CLASSES[column] for column in columns] == list(config.task.labels)


def test_once_trained_the_path_keeps_its_share_of_the_correction() -> None:
    torch.manual_seed(1)
    model = build_model(small_model_config(visual_prior=(7, 8, 9), dropout=0.0), 3)
    assert isinstance(model, VAVL) and model.config.visual_prior_mix == 0.5
    torch.nn.init.normal_(model.visual_head.layers[-1].weight)  # type: ignore[arg-type]
    visual, mask = torch.randn(2, 6, 10), torch.ones(2, 6, dtype=torch.bool)
    prior = masked_mean(visual[..., 7:10], mask)
    with torch.no_grad():
        model.eval()
        correction = model.visual_head(model.encode("visual", visual, mask))
        answered = model(visual=visual, visual_mask=mask).predictions["visual"]
        model.train()  # batch statistics: the training pass's own correction
        correction_in_training = model.visual_head(model.encode("visual", visual, mask))
        trained = model(visual=visual, visual_mask=mask).predictions["visual"]
    torch.testing.assert_close(answered, prior + 0.5 * correction)
    torch.testing.assert_close(trained, prior + correction_in_training)
