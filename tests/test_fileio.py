"""Files written together, all or none: fileio.atomic_paths and inference_io.save_images_atomically."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet3d_keras import fileio
from unet3d_keras.inference_io import save_images_atomically

from reliability_helpers import temporaries


def write_all(paths: list[Path], texts: list[str]) -> None:
    with fileio.atomic_paths(paths) as written:
        for tmp, text in zip(written, texts):
            tmp.write_text(text)


def contents(paths: list[Path]) -> list[str | None]:
    """Each path's text, None where there is no file, "<folder>" for a folder, "-> target" for a link."""
    seen = []
    for path in paths:
        if path.is_symlink():
            seen.append(f"-> {os.readlink(path)}")
        elif path.is_dir():
            seen.append("<folder>")
        else:
            seen.append(path.read_text() if path.exists() else None)
    return seen


def test_every_path_is_written_and_no_second_name_is_left(tmp_path):
    paths = [tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"]
    paths[1].write_text("old b")
    write_all(paths, ["new a", "new b", "new c"])
    assert contents(paths) == ["new a", "new b", "new c"]
    assert not temporaries(tmp_path)


def test_an_error_in_the_block_changes_no_path(tmp_path):
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    paths[0].write_text("old a")
    with pytest.raises(RuntimeError, match="stop"):
        with fileio.atomic_paths(paths) as written:
            written[0].write_text("new a")
            written[1].write_text("new b")
            raise RuntimeError("stop")
    assert contents(paths) == ["old a", None]
    assert not temporaries(tmp_path)


def test_a_path_that_cannot_be_replaced_puts_back_the_ones_renamed_before_it(tmp_path):
    # the third target is a folder: the first two, already renamed, get their old state back (a file, none)
    paths = [tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "folder", tmp_path / "d.txt"]
    paths[0].write_text("old a")
    paths[2].mkdir()
    (paths[2] / "inside.txt").write_text("kept")
    with pytest.raises(OSError) as raised:
        write_all(paths, ["new a", "new b", "new folder", "new d"])
    assert raised.value.filename == str(paths[2])
    assert contents(paths) == ["old a", None, "<folder>", None]
    assert (paths[2] / "inside.txt").read_text() == "kept"
    assert not temporaries(tmp_path)


def test_a_failed_rename_is_named_and_undone(tmp_path, monkeypatch):
    # a rename that fails itself (not the second name of the old file): the error names the target, not the
    # temporary, and the earlier targets, one of them a link, are as they were
    target = tmp_path / "target.txt"
    target.write_text("linked")
    paths = [tmp_path / "a.txt", tmp_path / "link.txt", tmp_path / "c.txt"]
    paths[1].symlink_to(target.name)
    real_replace = os.replace

    def refuse_the_last(source, destination):
        if Path(destination) == paths[2]:
            raise OSError(errno.EACCES, "Permission denied", str(source))
        real_replace(source, destination)

    monkeypatch.setattr(fileio.os, "replace", refuse_the_last)
    with pytest.raises(PermissionError) as raised:
        write_all(paths, ["new a", "new link", "new c"])
    assert raised.value.filename == str(paths[2]) and raised.value.errno == errno.EACCES
    assert contents(paths) == [None, "-> target.txt", None]
    assert target.read_text() == "linked"
    assert not temporaries(tmp_path)


@pytest.mark.parametrize("fail", [False, True])
def test_without_hard_links_the_old_file_is_copied(tmp_path, monkeypatch, fail):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fileio.os, "link", no_links)
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    paths[0].write_text("old a")
    if fail:
        paths[1].mkdir()
    try:
        write_all(paths, ["new a", "new b"])
    except IsADirectoryError as error:
        assert fail and error.filename == str(paths[1])
    assert contents(paths) == (["old a", "<folder>"] if fail else ["new a", "new b"])
    assert not temporaries(tmp_path)


def test_the_second_name_of_a_killed_writer_is_removed_by_the_next(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    path = tmp_path / "a.txt"
    path.write_text("old a")
    left = tmp_path / f".a.txt.tmp-{finished.pid}.old"
    os.link(path, left)
    write_all([path], ["new a"])
    assert contents([path]) == ["new a"] and not left.exists()


def test_suffixes_must_match_the_paths(tmp_path):
    with pytest.raises(ValueError, match="1 suffixes for 2 paths"):
        with fileio.atomic_paths([tmp_path / "a", tmp_path / "b"], [".gz"]):
            pass


def test_nifti_images_are_written_together_or_not_at_all(tmp_path):
    image = nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4))
    labels = tmp_path / "labels.nii.gz"
    probability = tmp_path / "labels_probability_1.nii.gz"
    save_images_atomically([image, image], [labels, probability])
    before = labels.read_bytes()
    # a folder where the middle file goes: the one renamed before it is put back, the one after is not renamed
    blocked = tmp_path / "labels_probability_0.nii.gz"
    blocked.mkdir()
    other = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), np.eye(4))
    with pytest.raises(OSError) as raised:
        save_images_atomically([other, other, other], [labels, blocked, probability])
    assert raised.value.filename == str(blocked)
    assert labels.read_bytes() == before
    np.testing.assert_array_equal(np.asarray(nib.load(probability).dataobj), np.asarray(image.dataobj))
    assert not temporaries(tmp_path)
    # gzip written where the name asks for it, uncompressed otherwise
    plain = tmp_path / "plain.nii"
    save_images_atomically([other, other], [labels, plain])
    assert labels.read_bytes()[:2] == b"\x1f\x8b" and plain.read_bytes()[:2] != b"\x1f\x8b"
    np.testing.assert_array_equal(np.asarray(nib.load(plain).dataobj), 0)


def test_an_output_folder_is_made_and_taken_back_only_while_empty(tmp_path):
    kept = tmp_path / "kept"
    with fileio.made_folder(kept / "a" / "b") as folder:
        (folder / "map.nii.gz").write_text("written")
    assert (kept / "a" / "b" / "map.nii.gz").read_text() == "written"

    with pytest.raises(ValueError, match="bad labels"):
        with fileio.made_folder(tmp_path / "new" / "deeper"):
            raise ValueError("bad labels")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept"]  # both folders it made are gone

    with pytest.raises(ValueError):
        with fileio.made_folder(kept / "a" / "c"):  # a and kept were there before: only c goes
            raise ValueError
    assert sorted(path.name for path in (kept / "a").iterdir()) == ["b"]

    with pytest.raises(KeyboardInterrupt):
        with fileio.made_folder(tmp_path / "partial" / "out") as folder:
            (folder / "half.tmp").write_text("")
            raise KeyboardInterrupt
    assert (tmp_path / "partial" / "out" / "half.tmp").exists()  # not empty: kept, with its parents
