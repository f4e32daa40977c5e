"""Every command's --help prints its options and exits 0 (argparse %-formats help texts, so a stray % breaks it)."""

import importlib
import pkgutil

import pytest

import unet3d_keras.commands

COMMANDS = [f"unet3d_keras.commands.{m.name}" for m in pkgutil.iter_modules(unet3d_keras.commands.__path__)]
BRATS = ["brats.evaluate", "brats.original_unet_train", "brats.predict", "brats.preprocess", "brats.train"]


@pytest.mark.parametrize("name", COMMANDS + BRATS)
def test_help_prints_the_options_and_exits_0(name, capsys):
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as done:
        module.main(argv=["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--help" in out


def test_every_command_is_checked():
    assert len(COMMANDS) == 7
