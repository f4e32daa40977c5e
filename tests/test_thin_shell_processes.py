"""examples/thin_shell/run.py: a child process's reply (reply_to_parent) as its parent reads it (run_json_process)."""

import textwrap
from pathlib import Path

import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def run(monkeypatch):
    return load_example("thin_shell_run", FOLDER / "run.py", monkeypatch)


def test_a_child_replies_with_its_json_line_after_whatever_it_printed(run, tmp_path):
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(FOLDER)!r})
        from run import reply_to_parent
        print("training on the annotated voxels: done")
        reply_to_parent({{"steps": 48, "iou": [0.99, 0.8, 0.4]}})
        print("never printed")
    """))
    assert run.run_json_process([str(child)], "the child") == {"steps": 48, "iou": [0.99, 0.8, 0.4]}
    assert "never printed" not in run.run_process([str(child)], "the child").stdout
