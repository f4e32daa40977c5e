"""Child processes of this folder's scripts: running densify and the scripts' own ``--child`` runs with one
thread each, two at a time, reading their replies, and keeping their results in JSON files as they come.

Each run is its own process because TensorFlow fixes its threads when it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, NoReturn, Sequence, TypeVar

from unet3d_keras.cpu import cpu_flags, cpu_name
from unet3d_keras.fileio import write_text_atomically
from unet3d_keras.onednn import ONEDNN_VARIABLE

from volume import VOLUMES  # this folder's: a script's folder is first on sys.path

T = TypeVar("T")  # a job of run_two_at_a_time
R = TypeVar("R")  # its result


def run_process(arguments: Sequence[str], what: str, threads: int | None = 1) -> subprocess.CompletedProcess:
    """Run ``python ARGUMENTS`` in its own process (TensorFlow fixes its threads when it starts) with ``threads``
    threads (None: TensorFlow's choice) and capture its output.

    Raises:
        RuntimeError: the process failed; names ``what`` and ends with the end of its errors.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault(ONEDNN_VARIABLE, "1")  # the kernels that scripts/densify.py runs on (unet3d_keras.onednn)
    if threads:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{what}: {done.stderr[-2000:]}")
    return done


def machine_name() -> str:
    """This machine as the results of this folder's scripts name it: its processor's model, the bfloat16
    instructions that make its steps fast, if any, and its number of cores."""
    flags = cpu_flags()
    fast = [name for flag, name in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    return f"{cpu_name()}{' with ' + ' and '.join(fast) if fast else ''}, {os.cpu_count()} cores"


def run_json_process(arguments: Sequence[str], what: str, threads: int | None = 1) -> dict:
    """:func:`run_process`, then the JSON object that the last line of its output holds."""
    return json.loads(run_process(arguments, what, threads).stdout.strip().splitlines()[-1])


def reply_to_parent(result: dict) -> NoReturn:
    """End a child process of :func:`run_json_process`: print ``result`` as the JSON line it reads, then exit."""
    print(json.dumps(result), flush=True)
    os._exit(0)  # TensorFlow's dataset threads can hold up a normal exit


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that runs ``script`` of this folder with ``argv`` (None: the process's arguments), quoted as
    a shell needs it."""
    return shlex.join(["python", f"examples/thin_shell/{Path(script).name}",
                       *(argv if argv is not None else sys.argv[1:])])


def save_json(path: Path, results: dict) -> None:
    """Write ``results`` to ``path`` as the scripts of this folder keep them, all at once."""
    write_text_atomically(path, json.dumps(results, indent=1) + "\n")


def start_results(path: Path, script: str, argv: Sequence[str] | None, empty: dict) -> tuple[dict, str]:
    """The results that a script of this folder keeps in ``path`` (``empty`` where there are none yet), with the
    :func:`command_line` that runs it added to their "commands"; and that command."""
    command = command_line(script, argv)
    results = json.loads(path.read_text()) if path.exists() else empty
    results.setdefault("commands", []).append(command)
    return results, command


def run_two_at_a_time(jobs: Iterable[T], run: Callable[[T], R], keep: Callable[[T, R], str], results: dict,
                      path: Path, at_once: int = 2) -> None:
    """``run`` each job (a child process each, see :func:`run_json_process`), two (``at_once``) at a time; after
    each, ``keep(job, result)`` files its result in ``results`` and returns a line to print, and ``results`` is
    written to ``path``, so that a failed run loses only itself."""
    lock = threading.Lock()  # keep and the write see one run at a time

    def one(job: T) -> None:
        result = run(job)
        with lock:
            line = keep(job, result)
            save_json(path, results)
        print(line, flush=True)

    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, jobs))


def run_seed_variants(script: str, path: Path, results: dict, command: str, volume: str, minutes: int,
                      seeds: Sequence[int], variants: Sequence[str], scores: Callable[[dict], str]) -> None:
    """Run ``script --child VOLUME SEED MINUTES VARIANT`` for each seed and variant, two at a time (by default a
    seed's two: they share the machine's load), one thread each (:func:`run_two_at_a_time`); file each result,
    with the machine and ``command``, as ``results[minutes][volume][variant][seed]``, written to ``path`` after
    each, and print it with ``scores(result)``."""
    record = results.setdefault(str(minutes), {}).setdefault(volume, {})
    machine = machine_name()

    def run(job: tuple[int, str]) -> dict:
        seed, variant = job
        return run_json_process([script, "--child", volume, str(seed), str(minutes), variant],
                                f"{volume} seed {seed} ({variant})", threads=1)

    def keep(job: tuple[int, str], result: dict) -> str:
        seed, variant = job
        record.setdefault(variant, {})[str(seed)] = {**result, "machine": machine, "command": command}
        return f"{volume}, {minutes} min, seed {seed} ({variant}): {result['steps']} steps; {scores(result)}"

    run_two_at_a_time([(seed, variant) for seed in seeds for variant in variants], run, keep, results, path)
    save_json(path, results)  # the command, where nothing ran


def seed_variants_main(script: str, doc: str, path: Path, variants: Sequence[str], default_variants: Sequence[str],
                       one_run: Callable[[str, int, int, str], dict], scores: Callable[[dict], str],
                       argv: list[str] | None, default_seeds: Sequence[int] = (42, 1),
                       budgets: Sequence[int] | None = None) -> int:
    """The command line of a script of this folder that runs variants of densify seed by seed, two at a time
    (weights.py, self_training.py, ensemble.py): ``--volume``, ``--seed``, ``--minutes`` (one of ``budgets``
    where given; default 12) and ``--variants`` (of ``variants``); :func:`run_seed_variants` files the results in
    ``path``; ``doc`` is the script's docstring. Each run is a child process, ``script --child VOLUME SEED MINUTES
    VARIANT``, that prints what ``one_run`` returns; ``scores(result)`` is what the parent prints of it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--volume", default="thin", choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, nargs="+", default=list(default_seeds),
                        help=f"densify's seeds (default {' '.join(map(str, default_seeds))})")
    parser.add_argument("--minutes", type=int, default=12, choices=budgets,
                        help="the time budget of each run (default 12)")
    parser.add_argument("--variants", nargs="+", default=list(default_variants), choices=variants,
                        help=f"the runs of each seed, two at a time (default: {' '.join(default_variants)})")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        volume, seed, minutes, variant = args.child
        reply_to_parent(one_run(volume, int(seed), int(minutes), variant))

    results, command = start_results(path, script, argv, {})
    run_seed_variants(script, path, results, command, args.volume, args.minutes, args.seed, args.variants, scores)
    return 0
