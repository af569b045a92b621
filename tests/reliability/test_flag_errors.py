"""Found by tools/fault_sweep.py (issue 13): a flag absl cannot parse (`--steps ten`, an unknown
flag, a missing required one) is one line naming it and the hint --help, exit 2, like every other
usage error (absl's own parser printed two lines and exited 1)."""

import re

import pytest
from absl import flags

from landiff_jax import cli


@pytest.fixture
def parse(capsys):
    def run(*args):
        with pytest.raises(SystemExit) as exit_:
            cli.parse_flags("tool.py", ["tool.py", *args])
        flags.FLAGS.unparse_flags()
        return exit_.value.code, capsys.readouterr().err.splitlines()
    return run


@pytest.mark.parametrize("args, message", [
    (["--pdb_post_mortem=maybe"], r"tool.py: error: flag --pdb_post_mortem=maybe: .*Non-boolean argument"),
    (["--no_such_flag_anywhere"], r"tool.py: error: Unknown command line flag 'no_such_flag_anywhere'"),
])
def test_one_line_and_exit_2(parse, args, message):
    code, lines = parse(*args)
    assert code == 2
    assert len(lines) == 1 and re.match(message, lines[0]) and lines[0].endswith(" (see --help)"), lines


def test_parsed_flags_pass_through():
    try:
        assert cli.parse_flags("tool.py", ["tool.py", "--pdb_post_mortem=false", "rest"]) == ["tool.py", "rest"]
        assert flags.FLAGS["pdb_post_mortem"].present
    finally:
        flags.FLAGS.unparse_flags()
