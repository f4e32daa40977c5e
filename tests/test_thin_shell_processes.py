"""examples/thin_shell/processes.py: a child process's reply (reply_to_parent) as run_json_process reads it."""

import textwrap
from pathlib import Path

import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def processes(monkeypatch):
    return load_example("thin_shell_processes", FOLDER / "processes.py", monkeypatch)


def test_a_child_replies_with_its_json_line_after_whatever_it_printed(processes, tmp_path):
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(FOLDER)!r})
        from processes import reply_to_parent
        print("training on the annotated voxels: done")
        reply_to_parent({{"steps": 48, "iou": [0.99, 0.8, 0.4]}})
        print("never printed")
    """))
    assert processes.run_json_process([str(child)], "the child") == {"steps": 48, "iou": [0.99, 0.8, 0.4]}
    assert "never printed" not in processes.run_process([str(child)], "the child").stdout
