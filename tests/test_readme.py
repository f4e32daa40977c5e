import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_quick_start_has_exactly_two_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert "scripts/train.py" in commands[0]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _quick_start_commands()[1]
    assert "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_config_reference_lists_every_key():
    from unet3d_keras.config import Config

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| section")}
    for key, value in Config().to_dict().items():
        if isinstance(value, dict):
            assert key in rows, key
            missing = [sub for sub in value if f"`{sub}`" not in rows[key]]
            assert not missing, (key, missing)
        else:
            assert f"`{key}`" in rows["top level"], key
