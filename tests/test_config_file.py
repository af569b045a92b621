import dataclasses

import pytest

from landiff_jax import config_file


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    name: str = "adamw"


@dataclasses.dataclass(frozen=True)
class Outer:
    steps: int = 10
    inner: Inner = Inner()


def _write(tmp_path, body):
    path = tmp_path / "exp.py"
    path.write_text(body)
    return path


def test_load_and_override(tmp_path):
    path = _write(tmp_path, "from tests.test_config_file import Outer\n"
                            "def get_config():\n    return Outer()\n")
    cfg = config_file.load(path, ["steps=5", "inner.lr=3e-4", "inner.name=sgd"])
    assert cfg == Outer(steps=5, inner=Inner(lr=3e-4, name="sgd"))


@pytest.mark.parametrize("override, words", [("nokey", "key=value"), ("stepz=1", "no field 'stepz'"),
                                             ("steps.x=1", "has no fields")])
def test_bad_overrides(override, words):
    with pytest.raises(config_file.ConfigError, match=words):
        config_file.apply_overrides(Outer(), [override])


def test_bad_files(tmp_path):
    with pytest.raises(config_file.ConfigError, match="not found"):
        config_file.load(tmp_path / "missing.py")
    with pytest.raises(config_file.ConfigError, match="get_config"):
        config_file.load(_write(tmp_path, "x = 1\n"))
    with pytest.raises(config_file.ConfigError, match="cannot be imported"):
        config_file.load(_write(tmp_path, "import not_a_module_anywhere\n"))
