"""Config files: the shipped ones by name, YAML or TOML read into an :class:`ExperimentConfig`
(errors with their line and column), saved back, and ``--set KEY=VALUE`` overrides."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vavl.config import ExperimentConfig, config_from_dict
from vavl.errors import ConfigError

SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the configurations that ship with vavl (usable instead of a path)."""
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file's path, or the path of the shipped config with that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / f"{name_or_path}.yaml"
    if not path.suffix and shipped.is_file():
        return shipped
    raise ConfigError(
        f"{path}: config file not found (shipped configs: {', '.join(shipped_configs())})"
    )


def load_config(name_or_path: str | Path) -> ExperimentConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) experiment config, or a shipped one by name.

    ``extends: NAME`` (a shipped config, or a file, relative to this one) starts from that
    config: each section's fields given here replace its own, the others stay."""
    path = resolve_config_path(name_or_path)
    values = _file_values(path, ())
    try:
        return config_from_dict(values, source=str(path))
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None


def _file_values(path: Path, extending: tuple[Path, ...]) -> dict[str, Any]:
    """The sections of the config file ``path``, with those of the config it extends."""
    values = _read_sections(path)
    base = values.pop("extends", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends takes a config name or file, not {base!r}")
    relative = path.parent / base
    base_path = resolve_config_path(relative if relative.is_file() else base)
    if base_path.resolve() in (*extending, path.resolve()):
        raise ConfigError(f"{path}: extends {base}, which extends it back")
    merged = _file_values(base_path, (*extending, path.resolve()))
    for section, fields in values.items():
        if isinstance(fields, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **fields}
        else:
            merged[section] = fields
    return merged


def _read_sections(path: Path) -> dict[str, Any]:
    """A config file's top-level mapping, as written."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            values = yaml.safe_load(text)
        elif path.suffix == ".toml":
            values = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: config files must end in .yaml, .yml or .toml")
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}:{yaml_problem(error)}") from None
    except tomllib.TOMLDecodeError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path}: not valid TOML: {first_line}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return values


def yaml_problem(error: yaml.YAMLError) -> str:
    """``LINE:COLUMN: not valid YAML: what`` (1-based, as editors count) from a YAML error."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""
    return f"{where} not valid YAML: {problem}"


def parse_value(text: str, what: str) -> Any:
    """A command-line value read as YAML (``5``, ``true``, ``[a, b]``, ``{k: v}``, text)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        column = f" at character {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{what}: the value is not valid YAML{column}: {problem}") from None


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply ``section.field=value`` overrides (values parsed as YAML) and validate again.

    List entries are addressed by index: ``data.corpora.0.root=/data/CREMA-D``.
    """
    values = config.to_dict()
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key:
            raise ConfigError(f"override '{override}': expected KEY=VALUE, e.g. training.epochs=5")
        *sections, name = key.split(".")
        node: Any = values
        for section in sections:
            if isinstance(node, list):
                if not section.isdigit() or int(section) >= len(node):
                    raise ConfigError(f"override '{override}': no entry {section} in that list")
                node = node[int(section)]
                continue
            child = node.get(section)
            if child is None:
                child = node[section] = {}
            if not isinstance(child, dict | list):
                raise ConfigError(f"override '{override}': '{section}' is not a section")
            node = child
        if isinstance(node, list):
            if not name.isdigit() or int(name) >= len(node):
                raise ConfigError(f"override '{override}': no entry {name} in that list")
            node[int(name)] = parse_value(raw, f"override '{override}'")
        else:
            node[name] = parse_value(raw, f"override '{override}'")
    return config_from_dict(values, source="overrides")
