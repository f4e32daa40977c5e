"""The generated documentation page is what its generators write from their committed results.

docs/sparse_annotation.md is written by two example scripts (``--markdown-only``): the MNI152
experiment writes the page and keeps the sections of others; the thin-shell experiment writes the
densify section at its end. Text edited into the page alone would be undone by the next run of either.
"""

from pathlib import Path

from example_scripts import load_example

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "sparse_annotation.md"


def test_the_sparse_annotation_page_is_what_its_generators_write(monkeypatch):
    page = PAGE.read_text(encoding="utf-8")
    thin_shell = load_example("thin_shell_page", ROOT / "examples" / "thin_shell" / "page.py", monkeypatch)
    section = thin_shell.markdown()
    assert page.endswith("\n\n" + section), (
        "edit examples/thin_shell/page.py, then run examples/thin_shell/run.py --markdown-only")
    mni152 = load_example("mni152_run", ROOT / "examples" / "mni152_sparse" / "run.py", monkeypatch)
    results = mni152.load_results(ROOT / "examples" / "mni152_sparse" / "results.json")
    assert mni152.markdown(results) + mni152.kept_sections(PAGE.parent) == page, (
        "edit examples/mni152_sparse/run.py, then run it with --markdown-only")
