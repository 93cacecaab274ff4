from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vavl.cli import main


def test_help_runs_as_an_installed_command() -> None:
    # The console script pip installed beside this interpreter.
    script = Path(sys.executable).parent / "vavl"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for command in ("demo", "train", "config", "info"):
        assert command in result.stdout


def test_a_command_prints_no_library_warning() -> None:
    """Warnings of the libraries vavl builds on (pydantic's "model_" prefix, on the lowest
    versions make test-min installs) are errors here: a user would see them on every command."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "vavl.cli", "config", "demo-synthetic"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr[-2000:]
    assert "model_dim" in result.stdout


def test_help_and_argument_errors_never_import_torch() -> None:
    """What keeps `vavl --help` and a mistyped option well under a second: no torch."""
    probe = (
        "import sys\n"
        "from vavl.cli import main\n"
        "for argv in (['--help'], ['predict', '--no-such-option']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'av', 'ctranslate2') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_bad_config_gives_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  epochz: 3\n")
    assert main(["train", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"vavl: error: {path}: unknown field 'training.epochz'"


def test_config_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "demo-synthetic", "--set", "training.epochs=2"]) == 0
    assert "epochs: 2" in capsys.readouterr().out
    assert main(["config"]) == 0
    assert "demo-synthetic" in capsys.readouterr().out


def test_extractors_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from vavl.features import EXTRACTORS, registered_dim

    assert main(["extractors"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows.keys() == EXTRACTORS.keys()
    for name, registration in EXTRACTORS.items():
        assert rows[name][1] == registration.modality, name
        dim = registered_dim(name)  # with its default options
        if dim is not None:  # the size the listing states is the one configs get
            assert f"{dim}-d" in " ".join(rows[name]), name


def test_train_then_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    arguments = ["train", "demo-synthetic", "--run-dir", str(run_dir), "--quiet"]
    settings = ["training.epochs=1", "data.n_train=32", "data.n_dev=16", "data.n_test=16"]
    for setting in settings:
        arguments += ["--set", setting]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert "audiovisual" in output and "F1-macro" in output
    assert main(["info", str(run_dir / "best.pt")]) == 0
    info = capsys.readouterr().out
    assert "synthetic-audio" in info and "inference checkpoint" in info
    assert main(["info", str(tmp_path / "nothing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
