"""The config loader: typed models, and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from propensity.config import StrictModel, load_config
from propensity.errors import ConfigError


class Inner(StrictModel):
    trials: int = 10


class Example(StrictModel):
    name: str = "x"
    search: Inner = Inner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "example.yaml"
    path.write_text(text)
    return path


def test_valid_file_loads_into_typed_model(tmp_path: Path) -> None:
    cfg = load_config(Example, write(tmp_path, "name: y\nsearch:\n  trials: 3\n"))
    assert cfg.name == "y" and cfg.search.trials == 3


def test_unknown_nested_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "search:\n  trails: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Example, path)
    assert "search.trails" in str(err.value) and str(path) in str(err.value)


def test_mistyped_value_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.trials"):
        load_config(Example, write(tmp_path, "search:\n  trials: many\n"))


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Example, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Example, write(tmp_path, "name: [unclosed\n"))


def test_overrides_apply_on_top_of_file(tmp_path: Path) -> None:
    cfg = load_config(Example, write(tmp_path, "name: y\n"), overrides={"name": "z", "search": None})
    assert cfg.name == "z"


SHIPPED_CONFIGS = sorted(p.name for p in (Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_every_shipped_config_is_valid_yaml_mapping(name: str) -> None:
    import yaml

    data = yaml.safe_load((Path(__file__).parent.parent / "configs" / name).read_text())
    assert isinstance(data, dict)
