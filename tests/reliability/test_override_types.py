"""Found by tools/fault_sweep.py (issue 13): `tools/train.py ... steps=ten` failed inside the
config's own validation with "'<' not supported between instances of 'str' and 'int'"; an
override must fit the kind of the field's current value, and the error says which."""

import dataclasses

import pytest

from landiff_jax import config_file


@dataclasses.dataclass(frozen=True)
class Run:
    steps: int = 10
    lr: float = 1e-3
    shuffle: bool = True
    path: str = "data"
    init_from: str | None = None

    def __post_init__(self):
        if self.steps < 1:  # a config's own check, as TrainConfig's
            raise ValueError("steps must be >= 1")


@pytest.mark.parametrize("override, message", [
    ("steps=ten", "override 'steps': expected a whole number (as 10), got 'ten'"),
    ("steps=2.5", "override 'steps': expected a whole number (as 10), got '2.5'"),
    ("steps=True", "override 'steps': expected a whole number"),
    ("lr=fast", "override 'lr': expected a number (as 0.001), got 'fast'"),
    ("shuffle=1", "override 'shuffle': expected True or False (as True), got '1'"),
])
def test_a_value_of_the_wrong_kind_is_named(override, message):
    with pytest.raises(config_file.ConfigError) as error:
        config_file.apply_overrides(Run(), [override])
    assert str(error.value).startswith(message), str(error.value)


def test_values_that_fit_are_taken():
    run = config_file.apply_overrides(Run(), ["steps=3", "lr=1", "shuffle=False", "path=123", "init_from=/tmp/x"])
    assert run == Run(steps=3, lr=1.0, shuffle=False, path="123", init_from="/tmp/x")
    assert isinstance(run.lr, float)
