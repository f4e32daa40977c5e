"""Loading the scripts of an examples/ folder in a test, as they run: beside their neighbours."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_example(name: str, path: Path, monkeypatch) -> ModuleType:
    """Import the script ``path`` as module ``name``, its folder first on ``sys.path`` (it imports its
    neighbours) and no neighbour of another folder of the same name cached; ``monkeypatch`` undoes both."""
    monkeypatch.syspath_prepend(str(path.parent))
    for neighbour in [m for m in sys.modules if m in {p.stem for p in path.parent.glob("*.py")}]:
        monkeypatch.delitem(sys.modules, neighbour)  # another folder's run.py must not stand in for this one's
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
