"""Peak memory of ``write_data_to_file`` for many subjects vs few: it must not grow with N.

Generates synthetic BraTS-like subjects (4 modalities + truth, ``--shape`` cubed voxels, NIfTI
``.nii.gz``) in a temporary folder, then writes the first ``n`` of them to an HDF5 file in a
fresh subprocess per case and reads that process's RSS high-water mark (``VmHWM``, and
``ru_maxrss`` as a cross-check; Linux carries the parent's ``ru_maxrss`` into a child, so that
column means little when this runs inside a large process such as ``benchmarks/run.py``). A
baseline subprocess that only imports the pipeline shows the fixed cost of the interpreter and
libraries.

    python benchmarks/hdf5_write_memory.py                 # 20 vs 2 subjects of 4x128^3
    python benchmarks/hdf5_write_memory.py --many 8 --few 2 --shape 64

Prints one line per case and the ratio many/few of the peak RSS (target <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODALITIES = ("t1", "t1ce", "flair", "t2")


def _peak_rss_mib() -> tuple[float, float]:
    """(VmHWM from /proc, ru_maxrss) of this process in MiB."""
    vm_hwm = float("nan")
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    vm_hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return vm_hwm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_subjects(folder: str, n_subjects: int, shape: int, seed: int = 0) -> list[tuple[str, ...]]:
    """Writes ``folder/<id>/{t1,t1ce,flair,t2,truth}.nii.gz``; returns the file tuples."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, shape)] * 3, indexing="ij", sparse=True)
    radius = grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    files = []
    for index in range(n_subjects):
        subject = os.path.join(folder, f"subject_{index:03d}")
        os.makedirs(subject, exist_ok=True)
        brain = radius < rng.uniform(0.6, 0.8)
        row = []
        for channel, modality in enumerate(MODALITIES):
            volume = np.where(brain, 400 + 100 * channel + 50 * grids[0] + rng.normal(0, 20, (shape,) * 3), 0)
            path = os.path.join(subject, f"{modality}.nii.gz")
            nib.Nifti1Image(volume.astype(np.int16), affine).to_filename(path)
            row.append(path)
        truth = np.zeros((shape,) * 3, dtype=np.uint8)
        truth[radius < 0.2] = 2
        truth[radius < 0.1] = 1
        truth[radius < 0.03] = 4
        path = os.path.join(subject, "truth.nii.gz")
        nib.Nifti1Image(truth, affine).to_filename(path)
        row.append(path)
        files.append(tuple(row))
    return files


def _child(arguments: dict) -> None:
    from unet3d_keras.data import write_data_to_file  # noqa: F401  (imports count in the baseline)

    start = time.perf_counter()
    if arguments["files"]:
        write_data_to_file(
            arguments["files"], arguments["out_file"], (arguments["shape"],) * 3,
            subject_ids=[os.path.basename(os.path.dirname(f[0])) for f in arguments["files"]],
            modalities=list(MODALITIES), labels=[1, 2, 4], show_progress=False,
        )
    vm_hwm, maxrss = _peak_rss_mib()
    print(json.dumps({"vm_hwm_mib": vm_hwm, "ru_maxrss_mib": maxrss, "seconds": time.perf_counter() - start}))


def _run_case(files, out_file, shape) -> dict:
    arguments = json.dumps({"files": [list(f) for f in files], "out_file": out_file, "shape": shape})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", arguments],
        capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"case with {len(files)} subjects failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--many", type=int, default=20, help="subjects in the large case (default 20)")
    parser.add_argument("--few", type=int, default=2, help="subjects in the small case (default 2)")
    parser.add_argument("--shape", type=int, default=128, help="edge of the cubic volumes (default 128)")
    parser.add_argument("--workdir", help="folder for the synthetic data (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0

    result = measure(args.many, args.few, args.shape, args.workdir)
    return 0 if result["ratio"] <= 1.5 else 1


def measure(many: int, few: int, shape: int, workdir: str | None = None) -> dict:
    """Peak RSS of writing ``few`` and ``many`` subjects of ``4 x shape^3`` (prints a table).

    Returns:
        ``{"baseline": ..., "cases": {n: {"vm_hwm_mib", "ru_maxrss_mib", "seconds", "file_mib"}},
        "ratio": many/few peak RSS, "above_imports_mib": [few, many], "target_ratio": 1.5}``.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        start = time.perf_counter()
        files = generate_subjects(os.path.join(folder, "subjects"), many, shape)
        print(f"generated {many} subjects of 4x{shape}^3 (+ truth) in {time.perf_counter() - start:.1f} s")
        baseline = _run_case([], "", shape)
        results = {}
        for n in (few, many):
            out_file = os.path.join(folder, f"data_{n}.h5")
            results[n] = _run_case(files[:n], out_file, shape)
            results[n]["file_mib"] = os.path.getsize(out_file) / 2**20
        print(f"{'case':<22}{'peak RSS (VmHWM)':>18}{'ru_maxrss':>12}{'time':>9}{'HDF5 file':>12}")
        print(f"{'imports only':<22}{baseline['vm_hwm_mib']:>14.0f} MiB{baseline['ru_maxrss_mib']:>8.0f} MiB")
        for n, result in results.items():
            print(
                f"{f'{n} subjects':<22}{result['vm_hwm_mib']:>14.0f} MiB{result['ru_maxrss_mib']:>8.0f} MiB"
                f"{result['seconds']:>8.1f}s{result['file_mib']:>8.1f} MiB"
            )
        ratio = results[many]["vm_hwm_mib"] / results[few]["vm_hwm_mib"]
        above = [results[n]["vm_hwm_mib"] - baseline["vm_hwm_mib"] for n in (few, many)]
        print(f"peak RSS ratio {many}/{few} subjects: {ratio:.2f} (target <= 1.5)")
        print(f"above the imports: {above[0]:.0f} MiB vs {above[1]:.0f} MiB")
    return {
        "shape": [4, shape, shape, shape], "few": few, "many": many, "baseline": baseline,
        "cases": {str(n): result for n, result in results.items()}, "ratio": ratio,
        "above_imports_mib": above, "target_ratio": 1.5,
    }


if __name__ == "__main__":
    sys.exit(main())
