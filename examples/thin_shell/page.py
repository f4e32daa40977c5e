"""The page section that this folder's scripts measure, written from their results files: docs/sparse_annotation.md
from "Densify: training length, held-back scores and thin classes" to its end (``run.py --markdown-only``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from unet3d_keras.config import sets_key
from unet3d_keras.densify_holdout import RARE_CLASS_SHARE
from unet3d_keras.fileio import write_text_atomically

# this folder's modules: a script's folder is first on sys.path
from experiments import (ACCELERATOR_RESULTS, ADDED_WAYS, BLENDING_RESULTS, BOUND_OTHERS, BOUND_RESULTS,
                         DECISION_RULES, DEFAULT_BLENDING, DEFAULT_SEED, DEFAULT_WEIGHTING, DENSE_ROWS, ENSEMBLE_PARTS,
                         ENSEMBLE_RESULTS, ENSEMBLE_ROWS, ENSEMBLE_SEED_OFFSET, ENSEMBLE_WAYS, FIGURE, FIGURE_RESULTS,
                         FIRST_RUN, FOREST_RESULTS, HERE, NEXT_SLICE_RESULTS, OFFSET_CHOICES, OFFSET_RESULTS, OLD,
                         OPTION_ROWS, ORACLE_RESULTS, OTHER_ROWS, ROOT, ROWS, SELF_TRAINING_FIRST_SHARE,
                         SELF_TRAINING_RESULTS, SELF_TRAINING_WAYS, TABLE, TUNING_RESULTS, TUNING_TOPICS,
                         TUNING_VARIANTS, VOLUME_TABLES, WATERSHED_RESULTS, WEIGHT_RESULTS, chosen_settings)
from colonies import RESULTS as COLONY_RESULTS
from colonies import ROWS as COLONY_ROWS
from colonies import __doc__ as COLONY_DOC
from lesion import DEFAULT_MINUTES, LOGIT_STEPS, SIZE_SCALES, SIZE_STEPS, lesion_ious
from lesion import RESULTS as LESION_RESULTS
from lesion import setting_key as lesion_setting
from lesion import with_bias
from volume import CLASSES, MEMBRANE, ONE_VOXEL, OTHER_SEED, VOLUMES
from volume import __doc__ as VOLUME_DOC

#: how page_usage.md names each volume
PLAIN_NAMES = {"thick": "two-voxel membranes", "thin": "one-voxel membranes", "clear": "clear membranes",
               "edges": "two-voxel membranes with no brightness of their own"}
DOCS = FIGURE.with_name("sparse_annotation.md")
#: The page's section that this module writes (to the end of the page); examples/mni152_sparse/run.py keeps it.
SECTION = "\n## Densify: training length, held-back scores and thin classes\n"

#: the section's prose on how densify trains, with str.format fields for figures from the results files
USAGE = HERE / "page_usage.md"
#: the section's last subsection: which runs were made on slower machines
MACHINES = HERE / "page_machines.md"


def weighting_in(arguments: Sequence[str], default: str) -> str:
    """The value of ``--class-weights`` in densify arguments, or ``default`` when they do not give it."""
    return arguments[arguments.index("--class-weights") + 1] if "--class-weights" in arguments else default


def class_weighting(row: dict) -> str:
    """The row's --class-weights; rows that do not record it ran when ``sqrt`` was the default."""
    return row["class_weights"] if "class_weights" in row else weighting_in(row.get("arguments", []), "sqrt")


def expected_weighting(name: str) -> str:
    """The --class-weights that a row of this name runs with today (its own argument or the default)."""
    return weighting_in(ROWS[name.split(" [seed ")[0]][0], DEFAULT_WEIGHTING)


def seed_runs(rows: dict) -> dict[str, list[tuple[int, dict]]]:
    """The 5-minute rows run with several seeds: name -> [(seed, row), ...], the default seed first.

    Rows whose class weighting is not the one their name runs with today are left out.
    """
    seeded = {name: runs_of(rows, name) for name in ("old, 5 min", "new, 5 min", "new without mirroring, 5 min",
                                                     "new with square-root weights, 5 min",
                                                     "new without the final decay, 5 min") if name in rows}
    return {name: runs for name, runs in seeded.items()
            if len(runs) > 1 and all(class_weighting(row) == expected_weighting(name) for _, row in runs)}


def seed_order(seeds: Iterable[int | str]) -> list[int]:
    """``seeds`` as integers, DEFAULT_SEED first (the tables' own seed), then the others in ascending order."""
    return sorted(map(int, seeds), key=lambda seed: (seed != DEFAULT_SEED, seed))


def runs_of(rows: dict, name: str) -> list[tuple[int, dict]]:
    """The row ``name`` (seed DEFAULT_SEED) and its rows of other seeds, 'NAME [seed N]': [(seed, row), ...]."""
    return ([(DEFAULT_SEED, rows[name])] if name in rows else []) + sorted(
        (int(key.rsplit(" ", 1)[1].rstrip("]")), row) for key, row in rows.items() if key.startswith(f"{name} [seed "))


def table(results: dict, raw: str, volume_name: str) -> list[str]:
    """The lines of one volume's table and its goal (``volume_name``: its --volume)."""
    volume, rows = results["volume"], results["rows"]
    stale, every = uniform_rows(rows)
    marked = set() if every else set(stale)  # rows blended uniformly, marked when only some are
    shares = ", ".join(f"{c} {100 * v:.1f}%" for c, v in zip(CLASSES, volume["class_share"]))
    commands = results.get("commands", [results.get("command")])
    script = commands[0].split(" --rows")[0].split(" --seed")[0]  # the script and its --volume
    counted = f"{len(commands)} command{'s' * (len(commands) > 1)}"
    lines = [f"Produced by `{script}` on {results['machine']}, two densify runs at a time (each given one thread: "
             f"`TF_NUM_INTRAOP_THREADS=1`), seed {DEFAULT_SEED} (other seeds under the table), in {counted} (a "
             f"later command's rows replace the earlier rows of the same name). Raw figures: "
             f"`examples/thin_shell/{raw}`.", "",
             f"<details><summary>The {counted}, in order</summary>", "",
             *(f"- `{c}`" for c in commands), "", "</details>", "",
             f"Volume {' x '.join(map(str, volume['shape']))} voxels ({shares}); "
             f"{100 * volume['annotated_share']:.1f}% annotated "
             f"({', '.join(f'{n} {c}' for c, n in zip(CLASSES, volume['annotated_voxels']))} voxels). "
             "IoU on the voxels that were never annotated; the last column is the membrane IoU that the run "
             "itself reported on its held-back voxels. \"old\" is densification as it was before the "
             "held-back voxels (`" + " ".join(OLD) + "`); \"new\" the defaults; \"new without mirroring\" "
             "the defaults with `--no-mirror` (each window predicted once, as before averaging its 8 mirrorings "
             "became the default)." + uniform_note(stale, every), "",
             "| densification | budget | steps | stopped | IoU background | IoU cell | IoU membrane | "
             "held-back IoU membrane |", "|---|---|---|---|---|---|---|---|"]
    t = results["thresholds"]["iou"]
    lines.append(f"| best intensity thresholds (fit on the annotated voxels) | - | - | - | {t[0]:.3f} | {t[1]:.3f} | "
                 f"{t[2]:.3f} | - |")
    for name in TABLE:
        if name not in rows:
            continue
        row = rows[name]
        held = row["held_back"]["2"]["iou"] if row.get("held_back") else None
        label = name.rsplit(", ", 1)[0].replace("every voxel", "new, every voxel")
        label += "" if row.get("final_decay") or name.startswith("old") else " *"
        label += " †" if class_weighting(row) != expected_weighting(name) else ""
        label += " ‡" if unmirrored_option(name, row) else ""
        label += " §" if name in marked else ""
        lines.append(f"| {label} | {row['minutes']:g} min | {row['steps']} | {row['stop_reason']} | "
                     f"{row['iou'][0]:.3f} | {row['iou'][1]:.3f} | {row['iou'][2]:.3f} | "
                     + ("-" if held is None else f"{held:.3f}") + " |")
    earlier = [row["steps"] for name, row in rows.items() if not row.get("final_decay") and not name.startswith("old")
               and row["minutes"] == 5]
    if earlier:
        fresh = rows.get("new, 5 min", {})
        speed = (f" (about {round(float(np.mean(earlier)), -2):.0f} steps in 5 minutes where the new 5-minute row made "
                 f"{fresh['steps']})" if fresh.get("final_decay") else "")
        lines += ["", f"\\* measured in an earlier session, on another machine{speed}, and before a plateau ended with "
                  "a final decay of the learning rate: compare them with each other, not with the other rows."]
    stale = sorted({class_weighting(rows[name]) for name in TABLE if name in rows
                    and class_weighting(rows[name]) != expected_weighting(name)})
    if stale:
        lines += ["", f"† trained with `--class-weights {' / '.join(stale)}`, densify's default when it ran "
                  f"(now `{DEFAULT_WEIGHTING}`), on top of the option its name gives."]
    if any(unmirrored_option(name, rows[name]) for name in TABLE if name in rows):
        lines += ["", "‡ predicted once per window, measured before averaging the 8 mirrorings of each window "
                  "became the default" + (": compare it with \"new without mirroring\"."
                                          if any(name.startswith("new without mirroring") for name in rows) else ".")]
    if marked.intersection(TABLE):
        lines += ["", "§ blended the overlapping windows uniformly, before Gaussian blending became the default."]
    lines += ["", "Against the goal (the membrane IoU at least doubles against the old defaults, no other class "
              "loses more than 0.01):", ""]
    ceilings = {rows[name]["minutes"]: rows[name] for name in DENSE_ROWS if name in rows}  # minutes -> row
    unseen = {rows[name]["minutes"]: rows[name] for name in OTHER_ROWS if name in rows}  # minutes -> row
    ceiling = ceilings.get(5.0)
    seeded = seed_runs(rows)
    pairs, budgets = [], {}
    for minutes in (5.0, 12.0):
        old, new = old_row(rows, minutes), rows.get(f"new, {minutes:g} min")
        budgets[minutes] = (old, new)
        # the bound of the same budget, else the shorter one's (then the text names its minutes)
        pairs.append((f"{minutes:g} min", old, new, ceilings.get(minutes, ceiling)))
    if {"old, 5 min", "new, 5 min"} <= set(seeded):
        old_runs, new_runs = seeded["old, 5 min"], seeded["new, 5 min"]
        pairs.append((f"5 min, mean of seeds {', '.join(str(seed) for seed, _ in new_runs)}"
                      + ("" if [seed for seed, _ in old_runs] == [seed for seed, _ in new_runs] else
                         f" (old: seeds {', '.join(str(seed) for seed, _ in old_runs)})"),
                      mean_row([r for _, r in old_runs]), mean_row([r for _, r in new_runs]), ceiling))
    # 12 minutes over seeds: the old runs of the same seeds stand in when they did their 960 steps in 5 minutes
    long_runs = runs_of(rows, "new, 12 min")
    old_long = old_mean(rows, [seed for seed, _ in long_runs], 12) if len(long_runs) > 1 else None
    if old_long:
        pairs.append((f"12 min, mean of seeds {', '.join(str(seed) for seed, _ in long_runs)}",
                      {"iou": old_long}, mean_row([r for _, r in long_runs]), ceilings.get(12.0, ceiling)))
    for when, old, new, bound in pairs:
        if old and new:
            ratio = new["iou"][2] / max(old["iou"][2], 1e-9)
            losses = [old["iou"][c] - new["iou"][c] for c in (0, 1)]
            met = ratio >= 2 and max(losses) <= 0.01
            why = "."
            if not met and bound and 2 * old["iou"][2] > bound["iou"][2]:
                other = unseen.get(bound["minutes"])
                why = (f" (doubling is out of reach: twice the old IoU, {2 * old['iou'][2]:.3f}, is above the "
                       f"{bound['iou'][2]:.3f} that the same model reaches in {bound['minutes']:g} minutes with "
                       "every voxel annotated"
                       + (f", and above the {other['iou'][2]:.3f} it reaches here trained on every voxel of "
                          "another volume like this one" if other else "") + ").")
            elif not met and old["iou"][2] > 0.5:
                why = " (doubling is out of reach: the old membrane IoU is above 0.5)."
            lines.append(f"- {when}: membrane {old['iou'][2]:.3f} -> {new['iou'][2]:.3f} (x{ratio:.2f}); "
                         f"background {old['iou'][0]:.3f} -> {new['iou'][0]:.3f}, cell {old['iou'][1]:.3f} -> "
                         f"{new['iou'][1]:.3f}: {'met' if met else 'not met'}{why}")
    lines += blending_lines(volume_name, rows)
    for minutes, bound in ceilings.items():
        sparse = [(name, row["iou"][2] / max(bound["iou"][2], 1e-9))
                  for name, row in zip(("old", "new"), budgets.get(minutes, (None, None))) if row]
        lines.append(f"- Trained on every voxel (less its held-back tiles) for {minutes:g} minutes, the model scores "
                     f"membrane {bound['iou'][2]:.3f} on the same voxels, which it saw"
                     + (": from two slices per axis, " + " and ".join(f"{name} {100 * value:.0f}%" for name, value
                                                                      in sparse) + f" of that at {minutes:g} minutes"
                        if sparse else "") + ".")
    for minutes, bound in unseen.items():
        new = budgets.get(minutes, (None, None))[1]
        lines.append(f"- Trained on every voxel of another volume made like this one (seed {OTHER_SEED} of the "
                     f"volume's generator) for {minutes:g} minutes ({bound['steps']} steps), the model scores membrane "
                     f"{bound['iou'][2]:.3f} (cell {bound['iou'][1]:.3f}) on this volume's never-annotated voxels, "
                     "which it did not see: what full annotation gives where the model must generalise"
                     + (f"; from two slices per axis, new {100 * new['iou'][2] / max(bound['iou'][2], 1e-9):.0f}% "
                        f"of that at {minutes:g} minutes" if new else "") + other_blending_text(volume_name, minutes)
                     + ".")
    old = rows.get("old, 5 min")
    if old and ceiling and ceiling["iou"][1] < old["iou"][1]:
        lines.append(f"- The row trained on every voxel scores the cell {ceiling['iou'][1]:.3f}, below the old "
                     f"densification's {old['iou'][1]:.3f} too: the cell's loss comes with the new training "
                     "recipe, not with the sparse annotation.")
    if {"old, 5 min", "new, 5 min"} <= set(seeded):
        text = "; ".join(f"{name.split(',')[0]} {np.mean([r['iou'][2] for _, r in runs]):.3f} "
                         f"(cell {np.mean([r['iou'][1] for _, r in runs]):.3f}; "
                         + ", ".join(f"seed {seed} {r['iou'][2]:.3f}" for seed, r in runs) + ")"
                         for name, runs in seeded.items())
        spread = max(r["iou"][2] for _, r in seeded["new, 5 min"]) - min(r["iou"][2] for _, r in seeded["new, 5 min"])
        lines.append(f"- Several seeds at 5 min (the seed of densify, and so of the held-back tiles, the windows and "
                     f"the weights), membrane IoU: {text}. The new rows spread by {spread:.3f} across seeds: one seed "
                     "does not tell apart options that differ by less.")
    lines += mirror_lines(rows)
    options = [(name, rows[name]) for name in OPTION_ROWS if name in rows
               and name not in (*DENSE_ROWS, *OTHER_ROWS) and rows[name].get("final_decay")  # rows of one session only
               and rows[name]["minutes"] == 5
               and class_weighting(rows[name]) == expected_weighting(name)]
    base = defaults_like([row for _, row in options], rows, 5)
    if base in rows:  # only options predicted as the defaults' row was (mirrored or once per window)
        options = [(name, row) for name, row in options if bool(row.get("mirror")) == bool(rows[base].get("mirror"))]
    if options and base in rows:
        options.insert(0, ("new, 5 min", rows[base]))
        defaults = ("defaults (no class weights, class-first windows, Dice term"
                    + ("" if rows[base].get("mirror") else ", each window predicted once") + ")")
        lines.append("- The options at 5 min, membrane (cell) IoU, one seed each: " + "; ".join(
            f"{defaults if name == 'new, 5 min' else name.rsplit(', ', 1)[0].replace('new', 'defaults')} "
            f"{row['iou'][2]:.3f} ({row['iou'][1]:.3f})" for name, row in options) + ".")
    long, short = rows.get("new, 12 min"), rows.get("new, 5 min")
    if long and short and long["iou"][2] < short["iou"][2]:
        lines.append(f"- The 12-minute run ({long['steps']} steps, stopped: {long['stop_reason']}) scored the "
                     f"membrane below the 5-minute run: one seed each, and the held-back voxels that choose the "
                     "weights to keep are few.")
    lines += plateau_lines(rows, ceilings)
    wide = rows.get("new with 16 base filters, 12 min")
    long = rows.get(defaults_like([wide] if wide else [], rows, 12))
    if wide and long:
        lines.append(f"- With 16 base filters instead of 8, the run makes {wide['steps']} steps in {wide['seconds']} "
                     f"s (8 base filters: {long['steps']} in {long['seconds']} s) and the membrane scores "
                     f"{wide['iou'][2]:.3f} against {long['iou'][2]:.3f} (cell {wide['iou'][1]:.3f} against "
                     f"{long['iou'][1]:.3f}): "
                     + ("in this budget a larger model does not pay." if wide["iou"][2] <= long["iou"][2] else
                        "the larger model scores higher, in fewer steps."))
    lines.append("")
    return lines


def blending_of(row: dict) -> str:
    """The row's blending of overlapping windows; rows that do not record it ran when it was uniform."""
    return row.get("window_weighting", "uniform")


def uniform_rows(rows: dict) -> tuple[list[str], bool]:
    """The rows of densify's new training blended otherwise than today's default (the old rows blend
    uniformly), and whether that is every one of them (then the table marks none)."""
    new = [name for name in rows if not name.startswith("old")]
    stale = [name for name in new if blending_of(rows[name]) != DEFAULT_BLENDING]
    return stale, len(stale) == len(new)


def uniform_note(stale: list[str], every: bool) -> str:
    """A sentence for the table's introduction on the rows blended uniformly (:func:`uniform_rows`), if any."""
    if not stale:
        return ""
    return (f" {'Every row' if every else 'The rows marked §'} blended the overlapping windows of its prediction "
            "uniformly (a plain average), as densify did before Gaussian blending became the default; under the "
            "table, 5-minute models trained again are each scored with both blendings.")


def blending_means(runs: dict) -> tuple[np.ndarray, np.ndarray]:
    """The IoU per class of blending.py's ``runs`` (any key -> run), mean over the runs: (uniform, gaussian)."""
    uniform, gaussian = (np.mean([run[w] for run in runs.values()], axis=0) for w in ("uniform", "gaussian"))
    return uniform, gaussian


def blending_results() -> dict:
    """blending.py's results (empty if it has not run)."""
    return json.loads(BLENDING_RESULTS.read_text()) if BLENDING_RESULTS.exists() else {}


def blending_budgets() -> list[int]:
    """The time budgets, in minutes, of blending.py's volume runs (its --minutes), shortest first."""
    return sorted(int(minutes) for minutes in blending_results().get("volumes", {}))


def blending_runs(volume: str, minutes: int, trained_on: str = "volumes") -> dict[int, dict]:
    """blending.py's runs of one volume and budget: seed -> IoU per class with each blending, DEFAULT_SEED first.

    ``trained_on``: ``"volumes"``, two slices per axis of the volume; ``"other_volume"``, every voxel of
    another volume made alike (blending.py --other).
    """
    by_minutes = blending_results().get(trained_on, {})
    runs = {int(seed): run for seed, run in by_minutes.get(str(minutes), {}).get(volume, {}).items()}
    return {seed: runs[seed] for seed in seed_order(runs)}


def blending_lines(volume: str, rows: dict) -> list[str]:
    """The same models blended uniformly and the Gaussian way, and the Gaussian way against the old rows,
    for each budget that blending.py ran."""
    return [line for minutes in blending_budgets() for line in budget_blending_lines(volume, rows, minutes)]


def budget_blending_lines(volume: str, rows: dict, minutes: int) -> list[str]:
    """:func:`blending_lines` of the models trained for ``minutes``."""
    runs = blending_runs(volume, minutes)
    if not runs:
        return []
    seeds = list(runs)
    uniform, gaussian = blending_means(runs)
    each = ", ".join(f"seed {seed} {runs[seed]['uniform'][2]:.3f} -> {runs[seed]['gaussian'][2]:.3f} "
                     f"(cell {runs[seed]['uniform'][1]:.3f} -> {runs[seed]['gaussian'][1]:.3f}, "
                     f"{runs[seed]['steps']} steps)" for seed in seeds)
    mirrored = all(runs[seed]["mirror"] for seed in seeds)
    lines = [f"- Blending the overlapping windows with Gaussian weights (the default) instead of uniformly, each of "
             f"a set of {minutes}-minute models trained again, scored both ways (`examples/thin_shell/blending.py`, "
             f"each window's 8 mirrorings "
             f"{'averaged' if mirrored else 'averaged where the budget allowed'}), mean of seeds "
             f"{', '.join(map(str, seeds))}: membrane {uniform[2]:.3f} -> {gaussian[2]:.3f}, cell {uniform[1]:.3f} -> "
             f"{gaussian[1]:.3f}, background {uniform[0]:.3f} -> {gaussian[0]:.3f} ({each})."]
    old = old_mean(rows, seeds, minutes)
    if old:
        ratio = gaussian[2] / max(old[2], 1e-9)
        losses = [old[c] - gaussian[c] for c in (0, 1)]
        met = ratio >= 2 and max(losses) <= 0.01
        new_steps = {seed: row["steps"] for seed, row in runs_of(rows, f"new, {minutes} min") if seed in runs}
        lines.append(f"- {minutes} min with today's defaults (those Gaussian-blended models), mean of seeds "
                     f"{', '.join(map(str, seeds))}, against the old runs of the same seeds: membrane {old[2]:.3f} -> "
                     f"{gaussian[2]:.3f} (x{ratio:.2f}); background {old[0]:.3f} -> {gaussian[0]:.3f}, cell "
                     f"{old[1]:.3f} -> {gaussian[1]:.3f}: {'met' if met else 'not met'}"
                     + (f" (those models made {round(float(np.mean([runs[seed]['steps'] for seed in seeds])))} steps "
                        f"in their {minutes} minutes; the table's new row{'s' * (len(new_steps) > 1)} of seed"
                        f"{'s' * (len(new_steps) > 1)} {', '.join(map(str, new_steps))} made "
                        f"{round(float(np.mean(list(new_steps.values()))))}"
                        f"{' on average' * (len(new_steps) > 1)}: a timed run's steps vary between "
                        "sessions, the old runs' 960 do not)"
                        if new_steps else "") + ".")
    return lines


def other_blending_text(volume: str, minutes: float) -> str:
    """blending.py --other's models of ``minutes``, trained on every voxel of another volume and blended
    both ways: a clause for the line on that bound, or "" where there are none."""
    runs = blending_runs(volume, round(minutes), "other_volume")
    if not runs:
        return ""
    uniform, gaussian = blending_means(runs)
    return (f"; trained so again (`examples/thin_shell/blending.py --other`, densify's seed{'s' * (len(runs) > 1)} "
            f"{', '.join(map(str, runs))}), it scores membrane {gaussian[2]:.3f} (cell {gaussian[1]:.3f}) with the "
            f"windows blended the Gaussian way (today's default), {uniform[2]:.3f} ({uniform[1]:.3f}) uniformly")


def old_mean(rows: dict, seeds: Iterable[int], minutes: int) -> list[float] | None:
    """The IoU per class of the old runs of ``seeds`` that stand for ``minutes``, mean over the seeds, or None
    where one is missing: the 5-minute runs; for 12 minutes a seed's 12-minute run, else its 5-minute one if it
    did its 960 steps (:func:`fits_five_minutes`)."""
    by_seed = {seed: row for seed, row in runs_of(rows, "old, 5 min") if minutes == 5 or fits_five_minutes(row)}
    if minutes == 12:
        by_seed.update(runs_of(rows, "old, 12 min"))
    seeds = list(seeds)
    if not seeds or any(seed not in by_seed for seed in seeds):
        return None
    return mean_row([by_seed[seed] for seed in seeds])["iou"]


class TwelveMinutes(NamedTuple):
    """blending.py's 12-minute models of one volume against the old runs (IoU per class, means over seeds)."""

    seeds: list[int]  #: the seeds of today's models
    today: np.ndarray | None  #: today's defaults (Gaussian-blended), None where blending.py has not run
    old: list[float] | None  #: the old runs of the same seeds, None where one is missing
    bound: np.ndarray | None  #: blending.py --other's models blended the Gaussian way, None where not run
    bound_seeds: list[int]


def twelve_minutes(volume: str, rows: dict) -> TwelveMinutes:
    """Today's defaults at 12 minutes, the old runs of the same seeds and the bound, for ``volume``'s ``rows``."""
    runs, bound = blending_runs(volume, 12), blending_runs(volume, 12, "other_volume")
    return TwelveMinutes(list(runs), blending_means(runs)[1] if runs else None, old_mean(rows, runs, 12),
                         blending_means(bound)[1] if bound else None, list(bound))


def fits_five_minutes(old: dict) -> bool:
    """An old run of 5 minutes that did its 960 steps: 12 minutes train the same map, so it stands for them."""
    return old.get("stop_reason") == "960 steps done"


def old_row(rows: dict, minutes: float) -> dict | None:
    """The old densification's row of ``minutes`` (the 5-minute one where it stands for 12 minutes)."""
    row = rows.get(f"old, {minutes:g} min")
    if row is None and "old, 5 min" in rows and fits_five_minutes(rows["old, 5 min"]):
        row = rows["old, 5 min"]
    return row


def mean_row(runs: list[dict]) -> dict:
    """A stand-in row whose per-class IoU is the mean over ``runs``."""
    return {"iou": np.mean([run["iou"] for run in runs], axis=0).tolist()}


def mirror_lines(rows: dict) -> list[str]:
    """The defaults with and without averaging the 8 mirrorings of each window (separate trainings)."""
    pairs = [(minutes, rows[f"new, {minutes} min"], rows[f"new without mirroring, {minutes} min"])
             for minutes in (5, 12) if {f"new, {minutes} min", f"new without mirroring, {minutes} min"} <= set(rows)]
    if not pairs:
        return []
    return ["- Averaging the 8 mirrorings of each window (the default) against predicting each window once "
            "(`--no-mirror`), separate trainings otherwise alike, membrane (cell) IoU: " + "; ".join(
                f"{minutes} min: {a['iou'][2]:.3f} ({a['iou'][1]:.3f}) after {a['steps']} steps against "
                f"{b['iou'][2]:.3f} ({b['iou'][1]:.3f}) after {b['steps']} steps" for minutes, a, b in pairs)
            + ". Timed runs differ in their steps and their kept weights from one run to the next; the effect of "
            "the mirroring alone is measured on one model predicted both ways under \"Prediction\" above."]


def unmirrored_option(name: str, row: dict) -> bool:
    """A row of the new defaults or an option of them, predicted once per window before mirroring was the default."""
    return not row.get("mirror") and not name.startswith(("old", "new without mirroring"))


def defaults_like(option_rows: list[dict], rows: dict, minutes: float) -> str:
    """The name of the defaults' row of ``minutes`` to compare options with: "new, N min", or the
    row "new without mirroring, N min" when the options were predicted once per window."""
    once = any(not row.get("mirror") for row in option_rows) and f"new without mirroring, {minutes:g} min" in rows
    return f"new without mirroring, {minutes:g} min" if once else f"new, {minutes:g} min"


def plateau_lines(rows: dict, ceilings: dict[float, dict]) -> list[str]:
    """Whether the 12-minute runs that stopped at the held-back plateau lost anything to the stop.

    ``ceilings``: minutes -> the row of that budget trained on every voxel.
    """
    whole = "new without the plateau stop, 12 min"
    stopped = defaults_like([rows[key] for key in rows if key.startswith(whole)], rows, 12)
    pairs = [(key.removeprefix(whole), rows[key.replace(whole, stopped)], rows[key]) for key in rows
             if key.startswith(whole) and key.replace(whole, stopped) in rows]
    if not pairs:
        return []
    text = "; ".join(f"{suffix.strip(' []') or f'seed {DEFAULT_SEED}'}: {a['iou'][2]:.3f} "
                     f"(cell {a['iou'][1]:.3f}) "
                     f"after {a['steps']} steps, ended after {a['seconds']} s, against {b['iou'][2]:.3f} (cell "
                     f"{b['iou'][1]:.3f}) after {b['steps']} steps" for suffix, a, b in pairs)
    gain = float(np.mean([b["iou"][2] - a["iou"][2] for _, a, b in pairs]))
    dense = [ceilings.get(5.0), ceilings.get(12.0)]
    verdict = ("training on to the end of the budget did not help the never-annotated voxels: the plateau of the "
               "held-back score stops where more training on the same annotated slices no longer pays"
               + (f", while the same model trained on every voxel gains from 5 to 12 minutes "
                  f"({dense[0]['iou'][2]:.3f} -> {dense[1]['iou'][2]:.3f})"
                  if all(dense) and dense[1]["iou"][2] > dense[0]["iou"][2] else "")
               if gain <= 0.01 else f"the plateau stop cost the membrane {gain:.3f} on average")
    return [f"- The 12-minute run with the plateau stop against the same run trained to the end of its budget "
            f"(`--patience 1000`), membrane IoU: {text}: {verdict}."]


def mni152_lines() -> list[str]:
    """The MNI152 goal (4 slices per axis stay >= 0.92) from examples/mni152_sparse/results.json."""
    path = ROOT / "examples" / "mni152_sparse" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"semi_automated": [], "runs": []}
    rows = [row for row in results["semi_automated"] if row["slices_per_axis"] == 4
            and row.get("placement", "even") == "even"]
    runs = [run for run in results["runs"] if "--redo" in run["command"]]
    new = [row for row in rows if "held_out_voxels" in row]
    if not new:
        return ["- MNI152, 4 slices per axis (>= 0.92 before): not re-measured with the new defaults.", ""]
    gm, wm = (float(np.mean([row[f"cnn_{c}_iou"] for row in new])) for c in ("gm", "wm"))
    each = ", ".join(f"seed {row['seed']} {row['cnn_gm_iou']:.3f}/{row['cnn_wm_iou']:.3f}" for row in new)
    weights = "no class weights" if all(row["class_weights"] is None for row in new) else "square-root class weights"
    # the command only where the results recorded one (the figures stand without it)
    produced = f" Produced by `{runs[-1]['command']}`." if runs else ""
    return [f"- MNI152, 4 slices per axis, evenly placed, with the new defaults (10% of each slice held back, "
            f"{weights}, class-first windows"
            + ("; each window's 8 mirrorings averaged" if all(row.get("mirror") for row in new) else "")
            + f"; 200 epochs of 16 steps): GM/WM IoU {gm:.3f}/{wm:.3f}, "
            f"mean of {len(new)} seeds ({each}): {'met' if min(gm, wm) >= 0.92 else 'not met'} (>= 0.92)."
            + produced, *mni152_blending_lines(new), *mni152_accelerator_lines(), ""]


def mni152_accelerator_lines() -> list[str]:
    """The MNI152 rows trained on a GPU (accelerator.py --mni152): a bullet, or nothing where they have not run."""
    record = json.loads(ACCELERATOR_RESULTS.read_text()) if ACCELERATOR_RESULTS.exists() else {}
    mni152 = record.get("mni152")
    if not mni152:
        return []
    runs = mni152["runs"]
    seeds = [str(seed) for seed in seed_order(runs)]
    gm, wm = (float(np.mean([runs[seed][DEFAULT_BLENDING][c] for seed in seeds])) for c in (0, 1))
    each = ", ".join(f"seed {seed} {runs[seed][DEFAULT_BLENDING][0]:.3f}/{runs[seed][DEFAULT_BLENDING][1]:.3f}"
                     for seed in seeds)
    counts = [runs[seed]["steps"] for seed in seeds]
    steps = f"{counts[0]} steps each" if len(set(counts)) == 1 else f"{', '.join(map(str, counts))} steps"
    return [f"- The same rows trained on a GPU (`{mni152['command']}`: {mni152['at_once']} trainings at once on one "
            f"{record['device']} under Keras's {record['backend']} backend, where `auto` chose "
            f"{runs[seeds[0]]['policy']}; {steps} in {', '.join(str(runs[seed]['seconds']) for seed in seeds)} s): "
            f"GM/WM IoU {gm:.3f}/{wm:.3f}, mean of "
            f"{len(seeds)} seeds ({each}): {'met' if min(gm, wm) >= 0.92 else 'not met'} (>= 0.92)."]


def mni152_blending_lines(rows: list[dict]) -> list[str]:
    """The MNI152 rows' models blended uniformly and the Gaussian way (blending.py --mni152).

    ``rows``: the MNI152 rows of 4 slices per axis trained with the new defaults.
    """
    results = blending_results()
    runs = results.get("mni152", {})
    if not runs:
        return []
    seeds = list(runs)  # in the order they ran
    command = next((c for c in reversed(results["commands"]) if "--mni152" in c), "")
    uniform, gaussian = blending_means(runs)
    each = ", ".join(f"seed {seed} {runs[seed]['gaussian'][0]:.3f}/{runs[seed]['gaussian'][1]:.3f} against "
                     f"{runs[seed]['uniform'][0]:.3f}/{runs[seed]['uniform'][1]:.3f}" for seed in seeds)
    recorded = {str(row["seed"]): (row["cnn_gm_iou"], row["cnn_wm_iou"]) for row in rows}
    repeated = all(seed in recorded and np.allclose(runs[seed]["uniform"], recorded[seed], atol=5e-4) for seed in seeds)
    return [f"- The same, blending the overlapping windows with Gaussian weights (today's default) instead of "
            f"uniformly: the same rows trained again, each model predicted both ways (`{command}`"
            + ("; blended uniformly, every seed repeats its row's figures" if repeated else "")
            + f"): GM/WM IoU {gaussian[0]:.3f}/"
            f"{gaussian[1]:.3f} against {uniform[0]:.3f}/{uniform[1]:.3f}, mean of {len(seeds)} seeds ({each}): "
            f"{'met' if min(gaussian) >= 0.92 else 'not met'} (>= 0.92)."]


def more_slices_note() -> str:
    """A sentence on what one slice more per axis gave the membrane (next_slices.py), or nothing where it has not
    run."""
    if not NEXT_SLICE_RESULTS.exists():
        return ""
    notes = [f"by {min(gains):+.3f} to {max(gains):+.3f} on `{volume}` ({record['steps']} steps a run)"
             for volume, record in json.loads(NEXT_SLICE_RESULTS.read_text())["runs"].items()
             if (gains := next_slice_gains(record))]
    return (" One slice more per axis, half as much annotation again, moved the membrane " + "; ".join(notes)
            + ', under "Where to look next".') if notes else ""


def glance_lines(results: dict[str, dict]) -> list[str]:
    """A table of each volume's membrane IoU: intensity thresholds, old densification, today's defaults at each
    budget, full annotation of another volume, and twice the old IoU (the goal); and the cells.

    Today's defaults and the bound are blending.py's models (Gaussian-blended, the bound its --other ones at
    12 minutes), the old runs those of the same seeds, each a mean over the seeds; volumes without all of
    them are left out. ``results``: --volume name -> its results file's contents.
    """
    budgets = blending_budgets()
    forests = forest_record()["volumes"]
    lines, all_seeds = [], set()
    for volume, volume_results in results.items():
        rows = volume_results["rows"]
        today = {minutes: blending_runs(volume, minutes) for minutes in budgets}
        seeds, _, old, bound, bound_seeds = twelve_minutes(volume, rows)
        if not old or any(set(runs) != set(seeds) for runs in today.values()) or bound_seeds != seeds:
            continue
        all_seeds |= set(seeds)
        means = {minutes: blending_means(runs)[1] for minutes, runs in today.items()}
        share = volume_results["volume"]["class_share"][2]
        thresholds = volume_results["thresholds"]["iou"][2]
        forest = f"{forests[volume]['iou'][MEMBRANE]:.3f}" if volume in forests else "-"
        lines.append(f"| `{volume}` | {100 * share:.1f}% | {thresholds:.3f} | {forest} | {old[2]:.3f} | "
                     + " | ".join(f"{means[minutes][2]:.3f}" for minutes in budgets)
                     + f" | x{means[12][2] / old[2]:.2f} | {bound[2]:.3f} | {2 * old[2]:.3f} | "
                     f"{old[1]:.3f} / {old[0]:.3f} -> {means[12][1]:.3f} / {means[12][0]:.3f} |")
    if not lines:
        return []
    seeds = ", ".join(map(str, seed_order(all_seeds)))
    return [f"At a glance: the membrane IoU on the never-annotated voxels, mean of densify's seeds {seeds}. \"Today\" "
            "is densify's defaults (`examples/thin_shell/blending.py`, windows blended the Gaussian way); \"old\" the "
            "densification before them (960 steps whatever the budget); the bound, the same model trained for 12 "
            "minutes on every voxel of another volume made alike (`blending.py --other`); the goal, twice the old "
            "IoU; the random forest, ilastik's classic pixel classification on the same annotated voxels (under the "
            "table of seed 42 below). The last column gives the other classes, which the goal allows to lose at most "
            "0.01.", "",
            "| volume | membrane share of the volume | intensity thresholds | random forest on filters | old | "
            + " | ".join(f"today, {minutes} min" for minutes in budgets)
            + " | today, 12 min / old | bound: another volume fully annotated, 12 min | goal: twice old | "
            "cell / background IoU, old -> today 12 min |",
            "|---|" + "---|" * (8 + len(budgets)), *lines, ""]


def figure_lines(results: dict[str, dict]) -> list[str]:
    """The picture that figure.py drew, with the runs it shows, or nothing where it has not run.

    ``results``: --volume name -> its results file's contents (for the table rows of the same seed).
    """
    if not (FIGURE.exists() and FIGURE_RESULTS.exists()):
        return []
    record = json.loads(FIGURE_RESULTS.read_text())
    drawn = {volume: record["volumes"][volume] for volume in VOLUMES if volume in record["volumes"]}
    runs = []
    for volume, volume_runs in drawn.items():
        table_row = results.get(volume, {}).get("rows", {}).get("new, 12 min")
        old, new = (volume_runs[name]["steps"] for name in ("old, 12 min", "new, 12 min"))
        runs.append(f"`{volume}` old {old}, today {new} steps"
                    + (f" (the table's row `new, 12 min` of the same seed: {table_row['steps']})" if table_row else ""))
    return [f"![A slice between the annotated ones: old and today's densification]({FIGURE.name})", "",
            f"The picture and the table under it: {', then '.join(f'`{command}`' for command in record['commands'])} "
            f"({record['machine']}, two runs at a time with one thread each). The picture shows one run of the old "
            f"densification and one of today's defaults per volume, seed {DEFAULT_SEED}, 12 minutes "
            f"({'; '.join(runs)}). Each panel gives its own run's IoU, which differs from "
            "the means above as one timed run does from another: where the plateau of the held-back score ends a run "
            "varies from one run to the next. The straight grey lines are the annotated x and y slices that "
            "cross this one: the written map keeps their labels, and no score counts them.", "",
            *between_cells_lines(drawn, record.get("membrane_between_cells_share", {})),
            *within_one_voxel_lines(drawn, record.get("thresholds_within_one_voxel", {}))]


def old_today_pairs(runs: dict, measured: str) -> dict[int, tuple[dict, dict]]:
    """figure.py's runs of one volume ('NAME' or 'NAME [seed N]' -> run): seed -> its old run and today's, for the
    seeds that have both; none unless every one of those runs has the key ``measured``."""
    news = dict(runs_of(runs, "new, 12 min"))
    pairs = {seed: (old, news[seed]) for seed, old in runs_of(runs, "old, 12 min") if seed in news}
    return pairs if all(measured in run for pair in pairs.values() for run in pair) else {}


def seeds_phrase(seeds: Iterable[int]) -> str:
    """'mean of seeds 42, 1' or 'seed 42', the seeds in the page's order."""
    seeds = seed_order(seeds)
    return ("mean of seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds))


def between_cells_lines(drawn: dict, shares: dict[str, float]) -> list[str]:
    """The membrane between touching cells and the outer one apart (figure.py's ``membrane_between_cells_iou``,
    ``membrane_outer_iou``), old against today, mean over the seeds that figure.py ran both for; nothing where
    it has not measured them.

    ``drawn``: volume -> run name ('NAME' or 'NAME [seed N]') -> run; ``shares``: volume -> the share of its
    never-annotated membrane voxels that lie between cells.
    """
    cells, seeds = [], set()
    for volume, runs in drawn.items():
        pairs = old_today_pairs(runs, "membrane_outer_iou")
        if volume not in shares or not pairs:
            return []
        seeds |= set(pairs)
        olds, new_runs = zip(*pairs.values())

        def means(score: Callable[[dict], float]) -> tuple[float, float]:
            """The mean of ``score`` over the old runs and over today's."""
            return float(np.mean([score(run) for run in olds])), float(np.mean([score(run) for run in new_runs]))

        cells.append((volume, means(lambda run: run["membrane_between_cells_iou"]),
                      means(lambda run: run["membrane_outer_iou"]), means(lambda run: run["iou"][2])))
    return ["Where the thin class is hard: the membrane's IoU on the never-annotated voxels that have no background "
            "voxel among their 6-neighbours (the membranes between touching cells) and on the others (the outer "
            "surface, where the tissue meets the background), in `figure.py`'s runs, 12 minutes, "
            f"{seeds_phrase(seeds)}. The goal is measured on the whole class, as the tables do.", "",
            "| volume | share of the membrane between cells | membrane between cells, old -> today | today / old | "
            "outer surface, old -> today | whole membrane, old -> today |", "|---|---|---|---|---|---|",
            *(f"| `{volume}` | {100 * shares[volume]:.0f}% | {between[0]:.3f} -> {between[1]:.3f} | "
              f"x{between[1] / max(between[0], 1e-9):.2f} | {outer[0]:.3f} -> {outer[1]:.3f} | "
              f"{whole[0]:.3f} -> {whole[1]:.3f} |"
              for volume, between, outer, whole in cells), ""]


def within_one_voxel_lines(drawn: dict, thresholds: dict[str, dict]) -> list[str]:
    """How much of the membrane the maps of figure.py find up to one voxel (its ``membrane_within_one_voxel``), old
    against today, mean over the seeds that it ran both for, next to the best intensity thresholds; then, for the
    one-voxel volumes, what lies beside today's misses. Nothing where figure.py has not measured it.

    ``drawn``: volume -> run name ('NAME' or 'NAME [seed N]') -> run; ``thresholds``: volume -> the thresholds'
    ``membrane_within_one_voxel``.
    """
    rows, misses, seeds, sides_minor = [], [], set(), True
    for volume, runs in drawn.items():
        pairs = old_today_pairs(runs, "membrane_within_one_voxel")
        if volume not in thresholds or not pairs:
            return []
        seeds |= set(pairs)
        olds, todays = ({key: float(np.mean([pair[which]["membrane_within_one_voxel"][key] for pair in pairs.values()]))
                         for key in pairs[min(pairs)][which]["membrane_within_one_voxel"]} for which in (0, 1))
        rows.append(f"| `{volume}` | " + " | ".join(f"{found['precision']:.3f} / {found['recall']:.3f}"
                                                   for found in (thresholds[volume], olds, todays))
                    + f" | {todays['exact_recall']:.3f} / {todays['recall'] - todays['exact_recall']:.3f} / "
                    f"{1 - todays['recall']:.3f} |")
        if volume in ONE_VOXEL:
            sides_minor &= todays["across"] < (1 - todays["exact_recall"]) / 2
            misses.append(f"`{volume}`: {100 * todays['precision']:.0f}% of its membrane voxels are on the true "
                          f"membrane or next to it; of the true membrane it marks {100 * todays['exact_recall']:.0f}%, "
                          f"has {100 * todays['across']:.0f}% across the face (on the other side), "
                          f"{100 * todays['inward']:.0f}% one voxel into the cell, leaves "
                          f"{100 * todays['gap']:.0f}% as holes in a face it draws around them, and misses "
                          f"{100 * (1 - todays['recall']):.0f}% by more than a voxel")
    return ["Found up to a voxel: how much of the membrane the same maps find when one voxel off counts, on the "
            "never-annotated voxels: the share of the map's membrane voxels with a true membrane voxel at most one "
            "voxel away (itself or a 6-neighbour), then the share of the true membrane voxels with a voxel of the "
            "map's membrane that near (matches looked for among the never-annotated voxels only); "
            f"{seeds_phrase(seeds)}. The last column splits today's true membrane voxels into those the map marks, "
            "those next to a voxel that it marks and those farther from its membrane.", "",
            "| volume | intensity thresholds | old | today | today: marked / next to a marked voxel / farther |",
            "|---|---|---|---|---|", *rows, "",
            *([f"What today's one-voxel membrane misses, by the voxel of its membrane beside each miss: "
               f"{'; '.join(misses)}."
               + (" The membrane it draws lies where the true one is, but with holes and patches missing; the "
                  "membrane put on the wrong side of a face is the smaller part of the misses." if sides_minor else "")
               + " Drawn over every face of the true cells, the model's own probabilities would give more (\"Finding "
               "the cells first\" below): the cells, not the sides, are what its probabilities show too little "
               "of.", ""] if misses else [])]


def summary_lines(results: dict[str, dict]) -> list[str]:
    """Seed 42's table of each volume's membrane IoU (thresholds, old and new densify, full annotation of another
    volume), then the goal's verdict in bullets.

    ``results``: --volume name -> its results file's contents.
    """
    lines, verdicts = [], []
    edge_notes = []  # a sentence for each volume whose membranes have no brightness of their own
    # (volume, membrane IoU of today's defaults at 12 minutes over that of the old runs of the same seeds, and
    # over that of full annotation of another volume blended alike, or None)
    today = []
    olds = {}  # volume -> the old runs' IoU per class, mean over blending.py's seeds (as the table at a glance)
    today_runs = {}  # volume -> today's defaults' IoU per class at 12 minutes, mean over the same seeds
    bounds_today = []  # each volume's bound blended the Gaussian way (blending.py --other), 0.0 where not run
    for volume, volume_results in results.items():
        rows = volume_results["rows"]
        thresholds = volume_results["thresholds"]["iou"][2]  # the membrane IoU of the best intensity thresholds
        old = old_row(rows, 12)
        news = [rows.get(f"new, {minutes} min") for minutes in (5, 12)]
        others = [rows.get(name) for name in OTHER_ROWS]
        if not old or not all(news):
            continue
        twelve = twelve_minutes(volume, rows)
        olds[volume] = twelve.old
        bound_today = twelve.bound[2] if twelve.bound is not None else 0.0
        bounds_today.append(bound_today)
        lines.append(f"| `{volume}` | {thresholds:.3f} | {old['iou'][2]:.3f} | "
                     + " | ".join(f"{row['iou'][2]:.3f}" for row in news) + " | "
                     + (" / ".join(f"{row['iou'][2]:.3f}" for row in others) if all(others) else "-")
                     + f" | {2 * old['iou'][2]:.3f} |")
        if twelve.old:  # today's defaults at 12 minutes against the old runs of the same seeds
            today_runs[volume] = twelve.today
            gaussian = twelve.today[2]
            today.append((volume, gaussian / twelve.old[2], gaussian / bound_today if bound_today else None))
        arguments = VOLUMES[volume]
        if "membrane_value" in arguments and arguments["membrane_value"] is None:
            edge_notes.append(
                f"- **Edges alone.** On `{volume}`, whose membranes have no brightness of their own, intensity "
                "thresholds find almost "
                f"none of the membrane ({thresholds:.3f}) and densification from two "
                f"slices per axis most of it (old {old['iou'][2]:.3f}, new {news[1]['iou'][2]:.3f} in 12 minutes): "
                "the model reads the edges between cells, which the intensity alone does not give.")
        # (volume, doubled at 12 min, share of the unseen bound reached at 12 min or None, twice old above it)
        verdicts.append((volume, news[1]["iou"][2] >= 2 * old["iou"][2],
                         news[1]["iou"][2] / others[1]["iou"][2] if all(others) else None,
                         all(others) and 2 * old["iou"][2] > max(others[1]["iou"][2], bound_today)))
    if not lines:
        return []
    met = [volume for volume, doubled, _, _ in verdicts if doubled]
    rare = colony_goal_lines()
    least = min(counts[MEMBRANE] / sum(counts) for counts in (each["volume"]["annotated_voxels"]
                                                              for each in results.values()))
    verdict = ["- **The goal.** In 12 minutes the membrane IoU at least doubles against the old one (the tables "
               "check the other classes too) on "
               + (", ".join(met) if met else f"none of these {len(verdicts)} volumes")
               + (f" (their membranes hold {100 * least:.0f}% of the annotated voxels or more; a rare one is in the "
                  "last bullet)" if rare else "") + "."]
    if all(above for *_, above in verdicts):
        shares = [share for _, _, share, _ in verdicts]
        verdict.append("- **Why not.** On every volume twice the old IoU is above what the same model reaches in the "
                       "same 12 minutes trained on every voxel of another volume like it"
                       + (" (with either blending of the windows)" if all(bounds_today) else "")
                       + ", and the new densification reaches "
                       f"{100 * min(shares):.0f}-{100 * max(shares):.0f}% of that from two slices per axis. With "
                       "these budgets the thin class is limited more by what the model reads of a membrane in a "
                       "blurred, noisy image than by the sparse annotation." + more_slices_note())
    if today:
        doubled = [volume for volume, ratio, _ in today if ratio >= 2]
        shares = [share for *_, share in today]
        verdict.append("- **Today's defaults** (the Gaussian-blended 12-minute models, against the old runs of the "
                       "same seeds) double it on " + (", ".join(doubled) if doubled else "none") + ": membrane IoU x"
                       + ", x".join(f"{ratio:.2f} ({volume})" for volume, ratio, _ in today)
                       + (f". They reach {100 * min(shares):.0f}-{100 * max(shares):.0f}% of what full annotation "
                          "of another volume gives, trained again for 12 minutes and blended alike" if all(shares)
                          else "")
                       + ".")
    bounds = bound_membranes()
    verdict += (weight_lines(results) + bound_lines(olds) + accelerator_lines(olds, bounds) + oracle_lines(olds, bounds)
                + forest_lines(olds, today_runs) + watershed_lines(olds) + self_training_lines(olds)
                + ensemble_lines(olds) + edge_notes + rare)
    stale = any(uniform_rows(volume_results["rows"])[0] for volume_results in results.values())
    return ([f"Seed {DEFAULT_SEED} alone, in the tables' rows: the membrane IoU on the never-annotated voxels (the "
             "tables give the other classes, the options and the other seeds"
             + ("; their \"new\" rows blended the windows uniformly, the table at a glance gives today's defaults"
                if stale else "")
             + ").", "",
             "| volume | intensity thresholds | old | new, 5 min | new, 12 min | "
             "another volume fully annotated, 5 / 12 min | twice old |", "|---|---|---|---|---|---|---|",
             *lines, "", *verdict, ""])


def signed(value: float) -> str:
    """``value`` with its sign, to 3 decimals; one that rounds to zero is +0.000, not -0.000."""
    return f"{round(float(value), 3) + 0.0:+.3f}"


def sem(values: Sequence[float]) -> float:
    """The standard error of the mean of ``values`` (at least two)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def paired_runs(runs: dict, variants: Sequence[str]) -> tuple[list[int], dict[str, list[dict]]]:
    """The seeds that each of ``variants`` ran (:func:`seed_order`) and each variant's runs of them, in that order.

    ``runs``: weights.py's or self_training.py's runs of one volume and budget, variant -> seed -> run.
    """
    seeds = seed_order(set.intersection(*(set(runs.get(variant, {})) for variant in variants)))
    return seeds, {variant: [runs[variant][str(seed)] for seed in seeds] for variant in variants}


def seed_changes(base: list[dict], other: list[dict], key: str) -> np.ndarray:
    """Seed x class: the IoU per class under ``key`` of each seed's run in ``other`` less that of the same seed's run
    in ``base`` (the seeds in the same order)."""
    return np.array([np.subtract(b[key], a[key]) for a, b in zip(base, other)])


def paired_gains(paired: dict[str, list[dict]]) -> np.ndarray:
    """What the square-root weights changed in each seed's pair of :func:`paired_runs`: seed x class, the
    Gaussian-blended IoU with them less without."""
    return seed_changes(paired["none"], paired["sqrt"], "gaussian")


def plateau_counts(paired: dict[str, list[dict]]) -> dict[str, int]:
    """Variant -> how many of its runs (variant -> its run of each seed, as :func:`paired_runs` gives them) the
    plateau of the held-back score ended."""
    return {variant: sum(run["plateaued"] for run in runs) for variant, runs in paired.items()}


def weight_summaries() -> dict[str, str]:
    """page_usage.md's fields, from weights.py's paired runs at 12 minutes (so that the summary agrees with the bullets
    under the goal): ``weights_at_12_minutes``, a bullet per volume; ``weights_why``, what the weights cost."""
    minutes = "12"
    record = json.loads(WEIGHT_RESULTS.read_text()) if WEIGHT_RESULTS.exists() else {}
    bullets, cell_costs, losses = [], [], []
    for volume in VOLUMES:
        runs = record.get(minutes, {}).get(volume, {})
        seeds, paired = paired_runs(runs, ("none", "sqrt"))
        if len(seeds) < 2:
            bullets.append(f"  - {PLAIN_NAMES[volume]}: not measured yet "
                           f"(`python examples/thin_shell/weights.py --volume {volume}`);")
            continue
        gains = paired_gains(paired)[:, [MEMBRANE, 1]]  # seed x (membrane, cell)
        membrane, cells = gains.mean(axis=0)
        lower, higher = (gains[:, 0] < 0).all(), (gains[:, 0] > 0).all()
        plateaus = plateau_counts(paired)
        whole_seeds, whole = paired_runs(runs, ("sqrt to the budget", "sqrt"))
        whole_text = ""
        if whole_seeds:
            longer = np.mean([a["gaussian"][MEMBRANE] - b["gaussian"][MEMBRANE] for a, b in zip(*whole.values())])
            whole_text = ("; trained to the end of the budget instead, the weights scored the membrane "
                          f"{longer:+.3f} against those runs ({len(whole_seeds)} seeds)")
        bullets.append(
            f"  - {PLAIN_NAMES[volume]} ({len(seeds)} seeds): membrane {membrane:+.3f} ("
            + ("lower on every seed, " if lower else "higher on every seed, " if higher else "")
            + f"{abs(membrane) / sem(gains[:, 0]):.1f} standard errors; each seed "
            + ", ".join(f"{gain:+.3f}" for gain in gains[:, 0]) + f"), cells {cells:+.3f}; the plateau of the "
            f"held-back score ended {plateaus['sqrt']} of the {len(seeds)} runs with the weights and "
            f"{plateaus['none']} of the defaults before the budget" + whole_text + ";")
        cell_costs.append((-cells, len(seeds)))
        if lower:
            losses.append(f", and on the {PLAIN_NAMES[volume]} they cost the membrane {-membrane:.3f} too, lower "
                          f"on every one of {len(seeds)} seeds")
    cost, count = max(cell_costs, default=(0.0, 0))
    why = (f" and up to {cost:.3f} at {minutes} minutes (mean of {count} seeds)" if cost > 0 else "") + "".join(losses)
    return {"weights_at_12_minutes": "\n".join(bullets)[:-1] + ".", "weights_why": why}


def three_figures(value: float) -> str:
    """``value`` to 3 significant figures, written out in full from 1000 on: 2.09, 572, 1,280,000."""
    rounded = float(f"{value:.3g}")
    return f"{rounded:,.0f}" if rounded >= 1000 else f"{rounded:g}"


def lesion_fields() -> dict[str, str]:
    """page_usage.md's fields from lesion.py's runs: ``lesion_sizes``, the table of its fixed-length runs on lesions of
    each size and what they show; ``lesion_logits``, the largest logit of its ``--logits`` runs; ``prior_bias``, its
    runs with the prior output biases (:func:`prior_bias_text`)."""
    record = json.loads(LESION_RESULTS.read_text()) if LESION_RESULTS.exists() else {}
    command = "python examples/thin_shell/lesion.py --seed 1 3 5 42 --steps {steps} --scale {scale:g}"
    rows, missed, gains, seeds = [], [], [], [1, 3, 5, 42]
    lost_shares, learned_shares = [], []  # the lesion's training shares of the runs without weights
    for scale in SIZE_SCALES:
        setting = lesion_setting(scale, 0, SIZE_STEPS)
        runs = record.get("runs", {}).get(setting, {})
        if "none" not in runs:
            rows.append(f"| x{scale:g} | not measured yet (`{command.format(steps=SIZE_STEPS, scale=scale)}`) "
                        "| | | | |")
            continue
        seeds, none, _, sqrt = lesion_runs(runs)
        chosen = auto_choices(seeds, none)
        shares = [run["training_share"] for run in none]
        rows.append(f"| x{scale:g} | {record['lesion_share'][setting]:.1%} | {min(shares):.2%} to {max(shares):.2%} "
                    f"| {chosen} | {lesion_ious(none)} | {lesion_ious(sqrt) if sqrt else '-'} |")
        missed.append(f"x{scale:g} {sum(run['lesion_iou'] < 0.1 for run in none)} of {len(none)}")
        for run in none:
            (lost_shares if run["lesion_iou"] < 0.1 else learned_shares).append(run["training_share"])
        if len(sqrt) == len(none):
            gains.append(f"x{scale:g} " + ", ".join(signed(b["lesion_iou"] - a["lesion_iou"])
                                                     for a, b in zip(none, sqrt) if a["lesion_iou"] >= 0.1))
    machines = sorted({record["machine"][key] for key in record.get("machine", {})
                       if key.endswith(f"{SIZE_STEPS} steps")})
    sizes = [f"`{command.format(steps=SIZE_STEPS, scale=SIZE_SCALES[0])}` and the same with `--scale "
             + ", ".join(f"{scale:g}" for scale in SIZE_SCALES[1:]) + f"` ({', '.join(machines)}; one thread each, "
             f"two at a time) train {SIZE_STEPS} steps, a fixed and repeatable length, on the lesion volume with the "
             "lesions' radii times the scale (the rest of the volume unchanged), without weights and with "
             "square-root weights. The lesion's IoU on the never-annotated voxels, seeds "
             + ", ".join(map(str, seeds)) + ":", "",
             "| lesions' radii | lesions' share of the annotated voxels | of the voxels trained on (each seed's "
             "held-back tiles left out) | `auto` chooses | lesion IoU without weights, each seed | with square-root "
             "weights |", "|---|---|---|---|---|---|", *rows, "",
             "- Runs without weights that learned no lesion (IoU below 0.1): " + "; ".join(missed) + "."]
    if lost_shares:
        most = max(lost_shares)
        above = sorted(share for share in learned_shares if share > most)
        sizes.append(f"- Without weights, the lesion was lost only where it was {most:.2%} or less of the voxels a run "
                     f"trained on: by {len(lost_shares)} of the {len(lost_shares) + len(learned_shares) - len(above)} "
                     "such runs. "
                     + (f"Every run above that learned it ({above[0]:.2%} to {above[-1]:.2%}). " if above else "")
                     + f"`auto` gives square-root weights below {RARE_CLASS_SHARE:.0%}.")
    if gains:
        sizes.append("- Square-root weights against none, on the seeds that learned the lesion without them: "
                     + "; ".join(gains) + ".")
    sizes.extend(lesion_timed_lines(record))
    logits = record.get("logits", {})
    if {"none", "sqrt"} <= set(logits):
        seed = min(map(int, logits["none"]))
        logit_text = (f"`python examples/thin_shell/lesion.py --logits --seed {seed}` trains densify's model on the "
                      f"lesions as drawn (1% of the annotated voxels) for {', '.join(map(str, LOGIT_STEPS))} steps, "
                      "from its initial weights each time, and reads the largest of its outputs before the softmax "
                      "(the logits) on three windows: without weights "
                      + ", ".join(three_figures(logits["none"][str(seed)][str(n)]) for n in LOGIT_STEPS)
                      + "; with square-root weights "
                      + ", ".join(three_figures(logits["sqrt"][str(seed)][str(n)]) for n in LOGIT_STEPS) + ".")
    else:
        logit_text = "Not measured yet: `python examples/thin_shell/lesion.py --logits --seed 5`."
    return {"lesion_sizes": "\n".join(sizes), "lesion_logits": logit_text, "prior_bias": prior_bias_text(record)}


def prior_bias_text(record: dict) -> str:
    """page_usage.md's field ``prior_bias``: lesion.py's runs with densify's ``--output-bias prior`` (its largest
    logits and its lesions at SIZE_STEPS steps without weights) beside the same runs from zero biases; ``record``:
    results_lesion.json's contents."""
    zero_setting = lesion_setting(SIZE_SCALES[0], 0, SIZE_STEPS)
    prior_setting = lesion_setting(SIZE_SCALES[0], 0, SIZE_STEPS, "prior")
    prior_runs = record.get("runs", {}).get(prior_setting, {}).get("none", {})
    logits = record.get("logits", {})
    prior_logits = logits.get(with_bias("none", "prior"), {})
    if not prior_runs or not prior_logits or zero_setting not in record.get("runs", {}):
        return ("Not measured yet: `python examples/thin_shell/lesion.py --logits --seed 5 --class-weights none "
                f"--output-bias prior` and `... --seed 1 3 5 42 --class-weights none --steps {SIZE_STEPS} "
                "--output-bias prior`.")
    seed = min(map(int, prior_logits))
    seeds = sorted(map(int, prior_runs))
    zero_runs = record["runs"][zero_setting]

    def ious(runs: dict) -> str:
        return lesion_ious(runs[str(s)] for s in seeds)

    return (f"`python examples/thin_shell/lesion.py --logits --seed {seed} --class-weights none --output-bias prior`: "
            f"the largest logit after {', '.join(map(str, LOGIT_STEPS))} steps without weights "
            + ", ".join(three_figures(prior_logits[str(seed)][str(n)]) for n in LOGIT_STEPS)
            + (" (from zero biases: " + ", ".join(three_figures(logits["none"][str(seed)][str(n)])
                                                  for n in LOGIT_STEPS) + ")" if str(seed) in logits.get("none", {})
               else "")
            + f". `python examples/thin_shell/lesion.py --seed {' '.join(map(str, seeds))} --class-weights none "
            f"--steps {SIZE_STEPS} --output-bias prior` ({record['machine'][prior_setting]}; one thread each, two at "
            f"a time): the lesion's IoU on the never-annotated voxels without weights, {seed_list(seeds)}: "
            f"{ious(prior_runs)}; from zero biases {ious(zero_runs['none'])}, and with square-root weights "
            f"{ious(zero_runs['sqrt'])} (the table above, {record['machine'][zero_setting]}).")


def lesion_runs(runs: dict) -> tuple[list[int], list[dict], list[int], list[dict]]:
    """One setting's runs in results_lesion.json (``{weighting: {seed: run}}``, with runs without weights): their
    seeds in ascending order and those runs; the seeds also run with square-root weights and those runs."""
    seeds = sorted(map(int, runs["none"]))
    sqrt_seeds = [seed for seed in seeds if str(seed) in runs.get("sqrt", {})]
    none = [runs["none"][str(seed)] for seed in seeds]
    return seeds, none, sqrt_seeds, [runs["sqrt"][str(seed)] for seed in sqrt_seeds]


def seed_list(seeds: Sequence[int | str]) -> str:
    """'seed 5' or 'seeds 1, 3'."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def auto_choices(seeds: Sequence[int], runs: Sequence[dict]) -> str:
    """What ``--class-weights auto`` chose in lesion.py's ``runs`` of ``seeds``, as markdown: the choice alone where
    every seed got it, else each choice with its seeds (`` `none` (seeds 1, 3), `sqrt` (seed 5) ``)."""
    seeds_of: dict[str, list[str]] = {}  # auto's choice -> the seeds it chose it for
    for seed, run in zip(seeds, runs):
        seeds_of.setdefault(run["auto"], []).append(str(seed))
    return ", ".join(f"`{choice}`" if len(chosen_for) == len(seeds) else
                     f"`{choice}` ({seed_list(chosen_for)})"
                     for choice, chosen_for in seeds_of.items())


def lesion_timed_lines(record: dict) -> list[str]:
    """A bullet for each grown lesion (``SIZE_SCALES`` but the first) that lesion.py also ran for its default
    minutes, the way a user runs densify: each seed's lesion IoU without and with weights, and ``auto``'s choice.

    ``record``: results_lesion.json's contents.
    """
    lines = []
    for scale in SIZE_SCALES[1:]:
        setting = lesion_setting(scale, DEFAULT_MINUTES, None)
        runs = record.get("runs", {}).get(setting, {})
        if "none" not in runs:
            continue
        seeds, none, sqrt_seeds, sqrt = lesion_runs(runs)
        lines.append(f"- Timed as a user runs it, `--max-minutes {DEFAULT_MINUTES:g}` (`python examples/thin_shell/"
                     f"lesion.py --seed {' '.join(map(str, seeds))} --scale {scale:g}`, {record['machine'][setting]}): "
                     f"on the lesions of x{scale:g} ({record['lesion_share'][setting]:.1%} of the annotated voxels), "
                     f"`auto` chose {auto_choices(seeds, none)}; the lesion's IoU without weights {lesion_ious(none)}, "
                     f"with square-root weights {lesion_ious(sqrt) if sqrt else 'not run'}"
                     + (f" ({seed_list(sqrt_seeds)})" if sqrt and sqrt_seeds != seeds else "") + ".")
    return lines


def weight_lines(results: dict[str, dict]) -> list[str]:
    """weights.py's paired runs (densify's defaults and the same with square-root class weights, side by side): a
    bullet per volume and budget, against the old runs of the same seeds; nothing where it has not run.

    ``results``: --volume name -> its results file's contents (for the old runs).
    """
    if not WEIGHT_RESULTS.exists():
        return []
    record = json.loads(WEIGHT_RESULTS.read_text())
    lines = []
    for minutes, volumes in ((key, value) for key, value in record.items() if key != "commands"):
        for volume, runs in ((volume, volumes[volume]) for volume in VOLUMES if volume in volumes):
            seeds, paired = paired_runs(runs, ("none", "sqrt"))
            if not seeds or volume not in results:
                continue
            made = {run["command"] for variant in runs.values() for run in variant.values()}
            quoted = [f"`{command}`" for command in record["commands"] if command in made]
            commands = " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            none, sqrt = (np.mean([run["gaussian"] for run in paired[w]], axis=0) for w in ("none", "sqrt"))
            changes = paired_gains(paired)
            gains = changes[:, MEMBRANE]
            machines = sorted({f"{run['machine']}, {run['policy']}" for pair in paired.values() for run in pair})
            plateaus = plateau_counts(paired)
            spread = (f"The mean paired gain, {np.mean(gains):+.3f}, is {np.mean(gains) / sem(gains):.1f} standard "
                      f"errors ({sem(gains):.3f}). " if len(seeds) > 2 else "")
            old = old_mean(results[volume]["rows"], seeds, int(minutes))
            against = ("" if old is None else
                       f" Against the old runs of the same seeds (membrane {old[MEMBRANE]:.3f}, cell {old[1]:.3f}, "
                       f"background {old[0]:.3f}): defaults x{none[MEMBRANE] / old[MEMBRANE]:.2f}, square-root "
                       f"weights x{sqrt[MEMBRANE] / old[MEMBRANE]:.2f} on the membrane, with the cells "
                       f"{none[1] - old[1]:+.3f} and {sqrt[1] - old[1]:+.3f}, the background {none[0] - old[0]:+.3f} "
                       f"and {sqrt[0] - old[0]:+.3f} (the goal: x2, and no class down by more than 0.01).")
            lines.append(
                f"- **Square-root class weights, {minutes} minutes, `{volume}`.** {commands} ({'; '.join(machines)}) "
                "trained densify's defaults and the same with `--class-weights sqrt` side by side, each seed's two "
                f"runs at once with one thread each, seeds {', '.join(map(str, seeds))}; Gaussian-blended, mean of "
                f"the seeds: membrane {none[MEMBRANE]:.3f} -> {sqrt[MEMBRANE]:.3f} (each seed "
                + ", ".join(f"{gain:+.3f}" for gain in gains) + f"), cell {none[1]:.3f} -> {sqrt[1]:.3f} (each "
                "seed " + ", ".join(f"{gain:+.3f}" for gain in changes[:, 1])
                + f"), background {none[0]:.3f} -> {sqrt[0]:.3f}; steps (seconds) "
                + " -> ".join(", ".join(f"{run['steps']} ({run['seconds']})" for run in paired[weighting])
                              for weighting in ("none", "sqrt")) + ". " + spread
                + (f"All {len(seeds)}" if plateaus["sqrt"] == len(seeds) else f"{plateaus['sqrt']} of the {len(seeds)}")
                + f" runs with the weights and {plateaus['none']} of the defaults ended on the plateau of their "
                "held-back score before the budget ran out." + whole_budget_text(runs)
                + headline_text(volume, int(minutes), dict(zip(seeds, paired["none"]))) + against)
    return lines


def headline_text(volume: str, minutes: int, defaults: dict[int, dict]) -> str:
    """weights.py's runs of densify's defaults (seed -> run) against blending.py's models of the same seeds,
    volume and budget (the table at a glance); "" where it has none of those seeds."""
    headline = blending_runs(volume, minutes)
    seeds = [seed for seed in defaults if seed in headline]
    if not seeds:
        return ""

    def scores(runs: dict[int, dict]) -> str:
        iou = np.mean([runs[seed][DEFAULT_BLENDING] for seed in seeds], axis=0)
        return (f"{iou[MEMBRANE]:.3f} (cell {iou[1]:.3f}; " + ", ".join(str(runs[seed]["steps"]) for seed in seeds)
                + " steps)")

    return (f" Densify's defaults in these runs scored the membrane {scores(defaults)} on seeds "
            f"{', '.join(map(str, seeds))}, against {scores(headline)} for blending.py's models of the same seeds in "
            "the table at a glance, made in other sessions: a timed run's score moves with its machine and its "
            "steps, so the paired runs compare with each other, not with the table.")


def whole_budget_text(runs: dict) -> str:
    """weights.py's runs with square-root weights trained to the end of the budget, against those of the same
    seeds that the plateau of the held-back score ended; "" where there are none. ``runs``: variant -> seed ->
    run, of one volume and budget."""
    seeds, paired = paired_runs(runs, ("sqrt to the budget", "sqrt"))
    if not seeds:
        return ""
    whole, ended = paired.values()
    means = [np.mean([run["gaussian"] for run in variant], axis=0) for variant in (whole, ended)]
    return (f" Trained to the end of the budget (`--patience 1000`; seeds {', '.join(map(str, seeds))}, one thread "
            "each), the runs "
            f"with the weights scored the membrane {means[0][MEMBRANE]:.3f} (each seed "
            + ", ".join(f"{run['gaussian'][MEMBRANE]:.3f}" for run in whole) + f"; cell {means[0][1]:.3f}) after "
            + ", ".join(str(run["steps"]) for run in whole) + f" steps, against {means[1][MEMBRANE]:.3f} (each seed "
            + ", ".join(f"{run['gaussian'][MEMBRANE]:.3f}" for run in ended)
            + f"; cell {means[1][1]:.3f}) for those that the plateau ended"
            + (": training on did not help the never-annotated voxels." if means[0][MEMBRANE] <= means[1][MEMBRANE]
               else "."))


def bound_membranes() -> dict[str, float]:
    """--volume name -> the highest membrane IoU of bound.py's runs on it (empty where it has not run)."""
    best: dict[str, float] = {}
    if BOUND_RESULTS.exists():
        for key, run in json.loads(BOUND_RESULTS.read_text()).items():
            volume = run.get("volume", key)  # the first run's record has no volume: its key is the volume
            best[volume] = max(best.get(volume, 0.0), run["iou"][MEMBRANE])
    return best


def bound_lines(olds: dict[str, list[float] | None]) -> list[str]:
    """bound.py's long trainings on every voxel of several other volumes: a bullet per run, against twice the
    old IoU, or nothing where it has not run.

    ``olds``: --volume name -> the old runs' IoU per class (None: not measured, the volume is left out).
    """
    if not BOUND_RESULTS.exists():
        return []
    from unet3d_keras.densify import DENSIFY_DEFAULTS

    densify_filters = DENSIFY_DEFAULTS["model"]["n_base_filters"]
    lines = []
    runs = json.loads(BOUND_RESULTS.read_text())
    for key, run in runs.items():
        volume = run.get("volume", key)  # the first run's record has no volume: its key is the volume
        old = olds.get(volume)
        if old is None:
            continue
        twice, membrane = 2 * old[MEMBRANE], run["iou"][MEMBRANE]
        # evaluations wander by about 0.02: the mean of each quarter of the run shows where the score still goes
        history = [entry[1 + MEMBRANE] for entry in run["history"]]
        quarters = [float(np.mean(part)) for part in np.array_split(history, 4)]
        filters = run.get("base_filters", densify_filters)
        # the first bound of the volume (its key is the volume) sets the length the others are compared with
        length = ", as long" if run["minutes"] == runs.get(volume, run)["minutes"] else f", {run['minutes']:g} minutes"
        more = run["others"] != BOUND_OTHERS
        if filters != densify_filters:
            volumes = f", {run['others']} volumes" if more else ""
            title, model = (f"A larger model{' and more annotated volumes' if more else ''}{length}: {filters} base "
                            f"filters{volumes}", f"the model with {filters} base filters instead of {densify_filters}")
        elif more:
            title, model = f"More annotated volumes{length}: {run['others']}", "the same model"
        else:
            title, model = "A longer bound", "the same model"
        seed = run.get("seed", DEFAULT_SEED)
        again = ""
        if seed != DEFAULT_SEED:
            title += f", seed {seed}"
            # the same run with densify's default seed: the spread that the seed alone makes
            first = next((other for name, other in runs.items() if other.get("seed", DEFAULT_SEED) == DEFAULT_SEED
                          and other.get("volume", name) == volume and other["others"] == run["others"]
                          and other["minutes"] == run["minutes"]
                          and other.get("base_filters", densify_filters) == filters), None)
            if first is not None:
                again = (f" With seed {DEFAULT_SEED} (other held-back tiles, windows and initial weights) it scored "
                         f"{first['iou'][MEMBRANE]:.3f} (cell {first['iou'][1]:.3f}) in {first['steps']} steps"
                         f"{'' if first['machine'] == run['machine'] else ' on ' + first['machine']}: the mean of "
                         f"the two seeds is {(membrane + first['iou'][MEMBRANE]) / 2:.3f}.")
        lines.append(
            f"- **{title}.** Trained for {run['minutes']:g} minutes ({run['steps']} steps; {run['machine']}) on "
            f"every voxel of {run['others']} other volumes made like `{volume}` (seeds {OTHER_SEED} to "
            f"{OTHER_SEED + run['others'] - 1} of its generator; `{run['command']}`), to the end of its budget, "
            f"{model} scores the membrane {membrane:.3f} (cell {run['iou'][1]:.3f}) on `{volume}`'s never-annotated "
            f"voxels: {'at or above' if membrane >= twice else 'below'} twice the old IoU ({twice:.3f}). Its membrane "
            "IoU on the tiles of those volumes held back from training, mean of the evaluations in each quarter of the "
            f"run: {', '.join(f'{q:.3f}' for q in quarters)}, {quarters[-1] - quarters[-2]:+.3f} from the third "
            f"quarter to the last; the last quarter's is {quarters[-1] - membrane:+.3f} from its score on "
            f"`{volume}`, which it never saw (those tiles lie amid voxels that it trained on)." + again)
    return lines


def accelerator_lines(olds: dict[str, list[float] | None], bounds: dict[str, float]) -> list[str]:
    """accelerator.py's runs on a GPU against twice the old IoU, today's defaults at 12 minutes (blending.py's) and
    the bounds on the page's CPUs: a bullet, or nothing where it has not run.

    ``olds``: as :func:`forest_lines` takes them, ``bounds`` as :func:`oracle_lines` does; a volume missing from
    ``olds`` is left out.
    """
    if not ACCELERATOR_RESULTS.exists():
        return []
    record = json.loads(ACCELERATOR_RESULTS.read_text())
    volume = record.get("volume")  # absent where only the MNI152 rows ran
    old = olds.get(volume) if volume else None
    if old is None:
        return []
    twice = 2 * old[MEMBRANE]
    runs = {str(seed): record["densify"][str(seed)] for seed in seed_order(record["densify"])}
    bound_runs = {filters: record["bound"][filters] for filters in sorted(record["bound"], key=int)}
    lines = [f"- **On a GPU.** `{record['command']}` trained {record['at_once']} models at once on one "
             f"{record['device']} under Keras's {record['backend']} backend ("
             + (f"`auto` chose {next(iter(runs.values()))['policy']}, " if runs else "")
             + f"{record['minutes']} minutes each). On `{volume}`:"]
    if runs:
        membranes = [run[DEFAULT_BLENDING][MEMBRANE] for run in runs.values()]
        stops = sorted({run["stop_reason"] for run in runs.values()})
        # the CPUs' 12-minute models of the same seeds where blending.py has them all, else of all its seeds
        cpu = blending_runs(volume, 12)
        same_seeds = all(int(seed) in cpu for seed in runs)
        cpu_runs = [cpu[int(seed)] for seed in runs] if same_seeds else list(cpu.values())
        cpu_iou = np.mean([run[DEFAULT_BLENDING] for run in cpu_runs], axis=0) if cpu_runs else None
        against = "" if cpu_iou is None else (
            f", against {cpu_iou[MEMBRANE]:.3f} (cell {cpu_iou[1]:.3f}) "
            + ("for the same seeds " if same_seeds else "") + "at 12 minutes on the page's CPUs"
            + ("" if same_seeds else f" (seeds {', '.join(map(str, cpu))})"))
        lines.append(
            f"  - densify's defaults (seeds {', '.join(runs)}) trained "
            f"{', '.join(str(r['steps']) for r in runs.values())} steps in "
            f"{', '.join(str(r['seconds']) for r in runs.values())} s ({'; '.join(stops)}) and scored the "
            f"membrane {', '.join(f'{m:.3f}' for m in membranes)} (mean {np.mean(membranes):.3f}; cell "
            f"{np.mean([run[DEFAULT_BLENDING][1] for run in runs.values()]):.3f}) on the never-annotated voxels"
            + against + ";")
    if bound_runs:
        lines.append(
            f"  - the bound, trained to the end of its budget on every voxel of {record['others']} other volumes, "
            "scored the membrane "
            + "; ".join(f"{run['iou'][MEMBRANE]:.3f} (cell {run['iou'][1]:.3f}) with {filters} base filters in "
                        f"{run['steps']} steps" for filters, run in bound_runs.items())
            + (f", against {bounds[volume]:.3f}, the best of the bounds above on the page's CPUs" if volume in bounds
               else "") + ";")
    if len(bound_runs) > 1:
        (small, first), *_, (large, last) = bound_runs.items()
        times = int(large) // int(small)
        lines.append(f"  - {times} times the base filters ({times ** 2} times the weights) moved the bound's membrane "
                     f"by {last['iou'][MEMBRANE] - first['iou'][MEMBRANE]:+.3f} in as many minutes;")
    best = max([run["iou"][MEMBRANE] for run in bound_runs.values()]
               + [run[DEFAULT_BLENDING][MEMBRANE] for run in runs.values()])
    lines.append(f"  - the best of them is {'at or above' if best >= twice else 'below'} twice the old IoU "
                 f"({twice:.3f}).")
    return lines


def oracle_lines(olds: dict[str, list[float] | None], bounds: dict[str, float]) -> list[str]:
    """oracle.py's readers told every cell, against twice the old IoU and the best the model reached: a bullet,
    or nothing where it has not run.

    ``olds``: --volume name -> the old runs' IoU per class (None: not measured, the volume is left out);
    ``bounds``: --volume name -> the highest membrane IoU of bound.py's runs.
    """
    if not ORACLE_RESULTS.exists():
        return []
    record = json.loads(ORACLE_RESULTS.read_text())
    parts, verdicts = [], []
    for volume, result in record["volumes"].items():
        old = olds.get(volume)
        if old is None:
            continue
        twice = 2 * old[MEMBRANE]
        boxes = {int(box): iou[MEMBRANE] for box, iou in result["boxes"].items()}
        parts.append(f"`{volume}` {result['whole_face'][MEMBRANE]:.3f} choosing once per face "
                     f"({result['faces_wrong']} of {result['faces']} faces on the wrong side) and, each voxel "
                     "choosing from the w x w x w voxels around it, "
                     + ", ".join(f"{iou:.3f} (w {box})" for box, iou in sorted(boxes.items())))
        enough = [box for box, iou in sorted(boxes.items()) if iou >= twice]
        verdicts.append(f"on `{volume}` twice the old IoU ({twice:.3f}) "
                        + (f"is first reached by the reader of {enough[0]} x {enough[0]} x {enough[0]} voxels"
                           if enough else "is out of reach of every reader" if twice > 1 else
                           "is reached only by choosing once per face" if result["whole_face"][MEMBRANE] >= twice
                           else "is above every reader")
                        + (f" (the model, trained an hour on every voxel of other volumes: {bounds[volume]:.3f})"
                           if volume in bounds else ""))
    if not parts:
        return []
    return [f"- **What the image shows.** Readers told every cell (where each face between two cells lies, each cell's "
            "brightness, the membrane's, the blur and the noise), which only choose the side of each face that carries "
            "its membrane, by the likelihood of the image, score the membrane on the never-annotated voxels (`"
            f"{record['commands'][-1]}`): " + "; ".join(parts) + ". So " + "; ".join(verdicts) + ". The image shows "
            "which side of a face carries the membrane to a reader that knows the cells and weighs a few voxels "
            "around each; the model, which must also find the cells, reads less of it in these budgets."]


def forest_record() -> dict:
    """forest.py's results file: ``{"volumes": {volume: result}, "commands": [...]}`` (no volumes if it has not
    run)."""
    return json.loads(FOREST_RESULTS.read_text()) if FOREST_RESULTS.exists() else {"volumes": {}, "commands": []}


def forest_lines(olds: dict[str, list[float] | None], todays: dict[str, np.ndarray]) -> list[str]:
    """forest.py's random forest against the old and today's densification: a bullet, or nothing where it has
    not run.

    ``olds``, ``todays``: --volume name -> the IoU per class of the old runs and of today's defaults at
    12 minutes (means over the same seeds); a volume missing from either is left out.
    """
    record = forest_record()
    compared = {volume: result for volume, result in record["volumes"].items()
                if olds.get(volume) and volume in todays}
    if not compared:
        return []
    command = record["commands"][-1]
    some = next(iter(compared.values()))
    ahead = [volume for volume, result in compared.items()
             if all(todays[volume][c] > result["iou"][c] for c in range(len(CLASSES)))]
    old_ahead = [volume for volume, result in compared.items() if olds[volume][MEMBRANE] > result["iou"][MEMBRANE]]
    return [f"- **A classic baseline.** A random forest of {some['trees']} trees on {some['features']} filter "
            "responses of the image (smoothing, gradient magnitude, Laplacian and Hessian eigenvalues at several "
            "scales), "
            "trained on the same annotated voxels as ilastik's pixel classification is (`" + command + "`), scores "
            "the membrane (cell) on the never-annotated voxels "
            + "; ".join(f"`{volume}` {result['iou'][MEMBRANE]:.3f} ({result['iou'][1]:.3f}) in "
                        f"{result['seconds']:.0f} s" for volume, result in compared.items())
            + ". The old densification's membrane is above it on " + (", ".join(old_ahead) or "none")
            + "; today's defaults at 12 minutes are above it in every class on " + (", ".join(ahead) or "none")
            + "."]


def watershed_lines(olds: dict[str, list[float] | None]) -> list[str]:
    """watershed.py's membrane redrawn between the cells that a watershed finds, against twice the old IoU: a
    bullet, or nothing where it has not run.

    ``olds``: --volume name -> the old runs' IoU per class (None: not measured, the volume is left out).
    """
    if not WATERSHED_RESULTS.exists():
        return []
    record = json.loads(WATERSHED_RESULTS.read_text())
    parts = []
    for volume, result in record["volumes"].items():
        if not olds.get(volume):
            continue
        grid = result["grid"]
        membranes = [run["iou"][MEMBRANE] for run in grid.values()]
        found = [run["cells_found"] for run in grid.values()]
        chosen = grid[result["setting"]]
        parts.append(
            f"`{volume}` ({result['steps']} steps, seed {result['seed']}): the model's own labels score the membrane "
            f"{result['model'][MEMBRANE]:.3f} (cell {result['model'][1]:.3f}); the redraw "
            f"{chosen['iou'][MEMBRANE]:.3f} (cell {chosen['iou'][1]:.3f}) with its setting, "
            f"{min(membranes):.3f}-{max(membranes):.3f} over {len(grid)} settings, whose watersheds find "
            f"{min(found)}-{max(found)} of the {result['cells']} cells; given the true cells (cut by the model's "
            f"foreground) it would score "
            f"{result['true_cells_model_side'][MEMBRANE]:.3f} choosing each face's side by the model's probability "
            f"and {result['true_cells_annotation_side'][MEMBRANE]:.3f} by the annotation first (twice the old IoU: "
            f"{2 * olds[volume][MEMBRANE]:.3f})")
    if not parts:
        return []
    return ["- **Finding the cells first.** A classic repair of a faint membrane between touching cells: a watershed "
            "of the model's membrane probability (smoothed, seeded far from any likely membrane) finds the cells, and "
            "a membrane one voxel thick is drawn on one side of each face between two of them, the side the "
            "annotation marks where the face crosses an annotated slice, else the side where the model's probability "
            "of membrane is higher (" + commands_text(record)
            + "; its setting was fixed on an earlier run). On the "
            "never-annotated voxels of " + "; ".join(parts) + ". The sides are not what is missing, the cells are: "
            "the model's probabilities show too little of the faces between them for a watershed to find most."]


def commands_text(record: dict) -> str:
    """The commands that made a results file of this folder (its "commands"), each once, as the page quotes them."""
    return ", ".join(f"`{command}`" for command in dict.fromkeys(record["commands"]))


def pays_on_every_seed(changes: Sequence[float], cell_changes: Sequence[float]) -> bool:
    """Whether a way paid against densify's defaults on every seed: the membrane up by more than 0.01 and the cells
    down by at most 0.01 (the goal's allowance), seed by seed."""
    return min(changes) > 0.01 and min(cell_changes) >= -0.01


def moved_text(changes: Sequence[float], cell_changes: Sequence[float]) -> str:
    """How far a way moved the membrane and the cells against densify's defaults, over the seeds."""
    return (f"The membrane moved by {signed(min(changes))} to {signed(max(changes))} and the cells by "
            f"{signed(min(cell_changes))} to {signed(max(cell_changes))}")


def offer_line(paid: list[str], declined: str) -> str:
    """The last sub-bullet of a way's bullet: ``declined`` where no way paid, else the ways that did."""
    return "  - " + (declined if not paid else
                     f"{' and '.join(paid)} paid on every seed; densify does not offer it yet.")


#: one way's runs of a volume and budget beside densify's defaults of the same seeds: the seeds, the defaults' runs
#: (their scores under "iou") and the way's runs, in seed order
Pairs = tuple[list[int], list[dict], list[dict]]


def budget_pairs(record: dict, pair: Callable[[dict], Pairs]) -> Iterator[tuple[str, str, Pairs]]:
    """``(minutes, volume, pair(runs))`` for each budget and volume of a record kept as ``{"commands": [...],
    minutes: {volume: runs}}`` (self_training.py's, ensemble.py's) where ``pair`` finds a seed."""
    for minutes, volumes in record.items():
        if minutes == "commands":
            continue
        for volume, runs in volumes.items():
            pairs = pair(runs)
            if pairs[0]:
                yield minutes, volume, pairs


def self_training_pairs(runs: dict, way: str) -> Pairs:
    """self_training.py's runs of ``way`` on one volume and budget beside its defaults of the same seeds."""
    seeds, paired = paired_runs(runs, ("defaults", way))
    return seeds, paired["defaults"], paired[way]


def self_training_lines(olds: dict[str, list[float] | None]) -> list[str]:
    """self_training.py's runs, each way of self-training against densify's defaults of the same seed: a bullet, or
    nothing where it has not run.

    ``olds``: --volume name -> the old runs' IoU per class (None: not measured, the volume is left out).
    """
    if not SELF_TRAINING_RESULTS.exists():
        return []
    record = json.loads(SELF_TRAINING_RESULTS.read_text())
    lines, paid = [], []
    for way, labels in SELF_TRAINING_WAYS.items():
        parts, changes, cell_changes, recalls, skews, over_first = [], [], [], [], [], []
        for minutes, volume, (seeds, defaults, trained) in budget_pairs(
                record, lambda runs: self_training_pairs(runs, way)):
            if olds.get(volume):
                pairs = list(zip(defaults, trained))
                change = seed_changes(defaults, trained, "iou")
                changes += list(change[:, MEMBRANE])
                cell_changes += list(change[:, 1])
                recalls += [new["membrane_recall"] for _, new in pairs]
                skews += [new["unlabelled_membrane_share"] / new["membrane_share"] for _, new in pairs]
                over_first += [new["iou"][MEMBRANE] - new["first_iou"][MEMBRANE] for _, new in pairs]
                parts.append(
                    f"`{volume}`, {minutes} minutes: " + "; ".join(
                        f"seed {seed} {new['iou'][MEMBRANE]:.3f} (cell {new['iou'][1]:.3f}) against "
                        f"{base['iou'][MEMBRANE]:.3f} ({base['iou'][1]:.3f}), the first model's own "
                        f"{new['first_iou'][MEMBRANE]:.3f} ({new['first_iou'][1]:.3f}); it labelled "
                        f"{100 * new['labelled_share']:.0f}% of the never-annotated voxels, its membrane labels were "
                        f"{100 * new['membrane_precision']:.0f}% right and held {100 * new['membrane_recall']:.0f}% "
                        "of their membrane, and of the voxels it left unlabelled "
                        f"{100 * new['unlabelled_membrane_share']:.0f}% are membrane "
                        f"({100 * new['membrane_share']:.0f}% of all)" for seed, (base, new) in zip(seeds, pairs))
                    + f" (twice the old IoU: {2 * olds[volume][MEMBRANE]:.3f})")
        if not parts:
            continue
        pays = pays_on_every_seed(changes, cell_changes)
        paid += [way] if pays else []
        # why it fails, where the figures say so: the sure labels miss most of the membrane, which then fills what
        # is left unlabelled at least twice beyond its share of the volume; the new model is no better than the first
        reasons = []
        if max(recalls) < 0.5 and min(skews) > 2:
            reasons.append("the sure labels hold the membranes that the first model already finds and leave out most "
                           "of those it misses, so the new model sees less membrane than the image holds")
        if max(map(abs, over_first)) <= 0.01:
            reasons.append("the new model scores the membrane as the first did, within 0.01 on every seed; it learns "
                           "back those labels, with half the budget of the defaults")
        elif max(over_first) <= 0.01:
            reasons.append("the new model scores the membrane at most 0.01 above the first model whose labels it "
                           f"learns ({min(over_first):+.3f} to {max(over_first):+.3f} on the seeds)")
        why = ": it paid on every seed." if pays else ": " + "; ".join(reasons) + "." if reasons else "."
        lines.append(
            f"  - {way[0].upper()}{way[1:]}, labelling {labels}: " + "; ".join(parts) + ". "
            + moved_text(changes, cell_changes) + why)
    if not lines:
        return []
    return [f"- **Self-training.** A common way to learn from few annotations: the model trained for the first "
            f"{100 * SELF_TRAINING_FIRST_SHARE:.0f}% of the budget labels the never-annotated voxels it is surest of, "
            "and a new model trains on those labels and the annotated voxels for the rest of the budget, to its end ("
            + commands_text(record)
            + "; each run one thread, two runs at a time on one machine). Membrane IoU (cell IoU in brackets) on the "
            "never-annotated voxels, against densify's defaults of the same seed and volume:",
            *lines, offer_line(paid, "Densify does not offer self-training.")]


def ensemble_pairs(runs: dict, way: str) -> Pairs:
    """ensemble.py's runs of ``way`` on one volume and budget (``runs``: variant -> seed -> run), each paired with
    densify's defaults of the same seed: the seeds, densify's defaults' scores and the way's runs, in seed order.

    The defaults are each "second model" run's first model, trained with the whole budget; a "two halves" run
    is paired with the "second model" run of its seed, which ran beside it."""
    seeds, paired = paired_runs(runs, ("second model", way))
    return seeds, [{"iou": run["first_iou"]} for run in paired["second model"]], paired[way]


def ensemble_note() -> str:
    """page_usage.md's sub-bullet on a second model in the time that the plateau leaves (ensemble.py), starting with its
    line break; empty where it has not run."""
    if not ENSEMBLE_RESULTS.exists():
        return ""
    record = json.loads(ENSEMBLE_RESULTS.read_text())
    changes, volumes = [], []
    for _, volume, (_, defaults, averaged) in budget_pairs(record, lambda runs: ensemble_pairs(runs, "second model")):
        changes += list(seed_changes(defaults, averaged, "iou")[:, MEMBRANE])
        volumes += [f"`{volume}`"] if f"`{volume}`" not in volumes else []
    if not changes:
        return ""
    lower = ", lower on every run" if max(changes) < 0 else ""
    return ("\n  - A second model, trained in the time that the plateau leaves and averaged with the first, moved the "
            f"membrane by {signed(min(changes))} to {signed(max(changes))} against the first alone{lower} "
            f"({', '.join(volumes)}, {len(changes)} runs; under \"Two models averaged\" below).")


def ensemble_lines(olds: dict[str, list[float] | None]) -> list[str]:
    """ensemble.py's runs, each way of averaging two models against densify's defaults of the same seed: a bullet,
    or nothing where it has not run.

    ``olds``: --volume name -> the old runs' IoU per class (None: not measured, the volume is left out).
    """
    if not ENSEMBLE_RESULTS.exists():
        return []
    record = json.loads(ENSEMBLE_RESULTS.read_text())
    lines, paid = [], []
    for way, averages in ENSEMBLE_WAYS.items():
        parts, changes, cell_changes, weaker, lowered = [], [], [], [], []
        for minutes, volume, (seeds, defaults, averaged) in budget_pairs(
                record, lambda runs: ensemble_pairs(runs, way)):
            if olds.get(volume):
                change = seed_changes(defaults, averaged, "iou")
                changes += list(change[:, MEMBRANE])
                cell_changes += list(change[:, 1])
                for base, run in zip(defaults, averaged):
                    if run["second_steps"]:  # two models were averaged
                        weaker += [run[field][MEMBRANE] < base["iou"][MEMBRANE] for field in ENSEMBLE_PARTS[way]]
                        lowered.append(run["iou"][MEMBRANE] < base["iou"][MEMBRANE])
                parts.append(f"`{volume}`, {minutes} minutes: " + "; ".join(
                    f"seed {seed} {run['iou'][MEMBRANE]:.3f} (cell {run['iou'][1]:.3f}) against "
                    f"{base['iou'][MEMBRANE]:.3f} ({base['iou'][1]:.3f}); its first model "
                    f"{run['first_iou'][MEMBRANE]:.3f} after {run['first_steps']} steps in {run['first_seconds']} s"
                    + (f", its second {run['second_iou'][MEMBRANE]:.3f} after {run['second_steps']} steps"
                       if run["second_steps"] else ", no time left for a second")
                    for seed, base, run in zip(seeds, defaults, averaged))
                    + f" (twice the old IoU: {2 * olds[volume][MEMBRANE]:.3f})")
        if not parts:
            continue
        pays = pays_on_every_seed(changes, cell_changes)
        paid += [way] if pays else []
        why = (": it paid on every seed." if pays else
               f": a model trained for part of the budget scored the membrane below densify's defaults in "
               f"{sum(weaker)} of {len(weaker)} cases, and averaging with it lowered the membrane in {sum(lowered)} of "
               f"the {len(lowered)} runs that averaged two models." if lowered else ".")
        lines.append(f"  - Averaging {averages}: " + "; ".join(parts) + ". " + moved_text(changes, cell_changes) + why)
    if not lines:
        return []
    return ["- **Two models averaged.** Averaging the probabilities of models trained from other seeds is a common "
            "way to use more of a budget (" + commands_text(record)
            + "; each run one thread, two runs at a time on one machine; the second model's seed is the first's plus "
            f"{ENSEMBLE_SEED_OFFSET}). Membrane IoU (cell IoU in brackets) on the never-annotated voxels, against "
            "densify's defaults of the same seed and volume, trained with the whole budget:", *lines,
            offer_line(paid, "Densify does not average models.")]


def offset_runs(record: dict, field: str) -> list[tuple[str, str, list[dict]]]:
    """``(volume, minutes, runs in seed order)`` of offsets.py's record whose runs all scored ``field``, the volumes
    in the page's order (VOLUMES)."""
    found = []
    for volume in sorted(record["runs"], key=list(VOLUMES).index):
        budgets = record["runs"][volume]
        for minutes in sorted(budgets, key=int):
            runs = [budgets[minutes][str(seed)] for seed in seed_order(budgets[minutes])]
            if all(field in run for run in runs):
                found.append((volume, minutes, runs))
    return found


class DecisionTable(NamedTuple):
    """One decision rule of offsets.py against the argmax: the table's lines; the (membrane, cell) changes of the
    means over the seeds, for the settings chosen on the held-back voxels and for the best ones for the
    never-annotated membrane; the seeds; and for each way of choosing on the held-back voxels, each budget's
    ``(volume and budget, each seed's membrane change, each seed's cell change)``."""
    lines: list[str]
    gains: np.ndarray
    best: np.ndarray
    seeds: list[int]
    per_seed: dict[str, list[tuple[str, list[float], list[float]]]]


def decision_table(record: dict, field: str) -> DecisionTable:
    """The table of one decision rule of offsets.py (``field`` of its runs) against the argmax, mean over the
    seeds."""
    argmax = DECISION_RULES[field][1]
    rows, gains, best, seeds, changes = [], [], [], set(), {}
    for volume, minutes, runs in offset_runs(record, field):
        seeds |= {int(seed) for seed in record["runs"][volume][minutes]}
        # the argmax: the neutral offset, which the ridge runs scored too
        bases = [run["offsets"]["0.0"]["never_annotated"] for run in runs]
        base = np.mean(bases, axis=0)
        cells = [f"{base[2]:.3f} / {base[1]:.3f}"]
        picks = [chosen_settings(run[field]) for run in runs]
        for how in OFFSET_CHOICES:
            chosen = [pick[how] for pick in picks]
            scores = [run[field][b]["never_annotated"] for run, b in zip(runs, chosen)]
            iou = np.mean(scores, axis=0)
            (gains if how.startswith("held-back") else best).append((iou[2] - base[2], iou[1] - base[1]))
            cells.append(f"{iou[2]:.3f} / {iou[1]:.3f} ({', '.join(chosen)})")
            if how.startswith("held-back"):
                changes.setdefault(how, []).append((f"`{volume}`, {minutes} min",
                                                    [a[2] - b[2] for a, b in zip(scores, bases)],
                                                    [a[1] - b[1] for a, b in zip(scores, bases)]))
        rows.append(f"| `{volume}`, {minutes} min | " + " | ".join(cells) + " |")
    header = (f"| volume, budget | {argmax} | chosen on the held-back voxels: best mean IoU of the classes | "
              "chosen on them: best membrane IoU | best for the never-annotated membrane (no user can choose it) |")
    return DecisionTable([header, "|---|---|---|---|---|", *rows], np.asarray(gains), np.asarray(best),
                         seed_order(seeds), changes)


#: how the lines under a decision rule's table name each way of choosing its setting on the held-back voxels
CHOICE_NAMES = {"held-back mean": "the best mean IoU of the classes", "held-back membrane": "the best membrane IoU"}


def decision_verdict(table: DecisionTable, rule: str, densify_lacks: str) -> list[str]:
    """The lines under a decision rule's table: what the chosen settings and the best ones changed, on each seed
    too, and whether densify offers the rule (it does not unless it paid on every budget with each criterion)."""
    membrane, cell = table.gains.T
    shortfalls = ([", and not steady from one budget or criterion to the next"] if membrane.min() <= 0.01 else []) + (
        [f", and it costs the cells up to {-cell.min():.3f}, more than the goal allows (0.01)"]
        if cell.min() < -0.01 else [])
    each_seed = []
    for how, budgets in table.per_seed.items():
        membranes = [change for _, changes, _ in budgets for change in changes]
        cells = [change for _, _, changes in budgets for change in changes]
        every = ("higher on every seed and budget" if min(membranes) > 0 else "not higher on every seed and budget")
        each_seed.append(
            f"- Chosen by {CHOICE_NAMES[how]} on the held-back voxels, each seed's membrane moved by "
            + ", ".join(f"{', '.join(f'{c:+.3f}' for c in changes)} ({label})" for label, changes, _ in budgets)
            + f" and its cells by {min(cells):+.3f} to {max(cells):+.3f}: {every}.")
    return [f"- Chosen on the held-back voxels, the {rule} moved the membrane by {membrane.min():+.3f} to "
            f"{membrane.max():+.3f} and the cells by {cell.min():+.3f} to {cell.max():+.3f}.", *each_seed,
            f"- Even the best {rule} for the never-annotated membrane gains it at most {table.best[:, 0].max():+.3f}, "
            f"with the cells {table.best[:, 1].min():+.3f} to {table.best[:, 1].max():+.3f}.",
            "- " + ("That is a small share of what the goal asks (twice the old IoU)" + "".join(shortfalls)
                    + f": densify does not offer {densify_lacks}." if shortfalls
                    else "It paid on every budget with each criterion."), ""]


def offset_lines() -> list[str]:
    """Tables of offsets.py's decision rules for the membrane (an offset, ridge decoding) against the argmax, mean
    over its seeds, and verdicts; nothing where it has not run."""
    if not OFFSET_RESULTS.exists():
        return []
    record = json.loads(OFFSET_RESULTS.read_text())
    offsets = decision_table(record, "offsets")
    held = sorted({run["held_out_membrane_voxels"] for budgets in record["runs"].values() for runs in budgets.values()
                   for run in runs.values()})
    held_text = str(held[0]) if len(held) == 1 else f"{held[0]} to {held[-1]}"
    lines = ["**No decision offset.** An offset added to the membrane's log-probability before the argmax turns cell "
             "voxels into membrane voxels. On the membranes below, densify's defaults were trained ("
             + commands_text(record)
             + f"; seeds {', '.join(map(str, offsets.seeds))}), each model predicted the volume as densify does, and "
             "every offset from -2 to 3 in steps of 0.1 was scored with that one prediction. Membrane / cell IoU on "
             "the never-annotated voxels, mean of the seeds, with each seed's offset in brackets (a run's held-back "
             f"voxels hold {held_text} membrane voxels):", "", *offsets.lines, "",
             *decision_verdict(offsets, "offset", "an offset")]
    if not offset_runs(record, "ridges"):
        return lines
    ridges = decision_table(record, "ridges")
    thresholds = sorted(next(iter(offset_runs(record, "ridges")))[2][0]["ridges"], key=float)
    return lines + [
        "**Ridge decoding.** Non-maximum suppression, which thins an edge to one pixel, would draw a faint "
        "membrane that the model spreads over both sides of a face once, on its likelier side: a voxel becomes "
        "membrane where its membrane probability is above a threshold and at least its two neighbours along the axis "
        "where that probability falls off fastest (unless the argmax says background). The same predictions "
        f"(seeds {', '.join(map(str, ridges.seeds))}) scored with every threshold from {thresholds[0]} to "
        f"{thresholds[-1]} in steps of 0.05, each seed's threshold in brackets:", "", *ridges.lines, "",
        *decision_verdict(ridges, "ridge decoding", "it")]


def moved_lines(changes: dict[str, np.ndarray]) -> str:
    """How far tuning.py's variants moved the membrane and the cells from the defaults, mean of the seeds: the range
    over the variants, or one variant's change with each seed's.

    ``changes``: variant -> its IoU per class less the defaults', seed by seed (:func:`seed_changes`).
    """
    means = np.array([change.mean(axis=0) for change in changes.values()])  # variant x class
    if len(changes) > 1:
        return (f"- Against the defaults, the variants moved the membrane by {signed(means[:, MEMBRANE].min())} to "
                f"{signed(means[:, MEMBRANE].max())} and the cells by {signed(means[:, 1].min())} to "
                f"{signed(means[:, 1].max())}.")
    ((name, each),) = changes.items()
    return (f"- Against the defaults, {name} moved the membrane by {signed(means[0, MEMBRANE])} (each seed "
            f"{', '.join(map(signed, each[:, MEMBRANE]))}) and the cells by {signed(means[0, 1])} (each "
            f"seed {', '.join(map(signed, each[:, 1]))}).")


def tuning_lines() -> list[str]:
    """A table per volume and command of tuning.py's variants of densify's defaults, mean over the seeds, and how far
    they moved the membrane; nothing where it has not run."""
    if not TUNING_RESULTS.exists():
        return []
    lines = []
    for volume, budgets in json.loads(TUNING_RESULTS.read_text())["runs"].items():
        for budget in budgets.values():
            variants, training, minutes = budget["variants"], budget["defaults"], f"{budget['minutes']:g}"
            window = "x".join(map(str, training["patch_shape"]))
            if "defaults" not in variants:  # a command still running, or stopped before its first run
                continue
            seeds = [str(seed) for seed in seed_order(variants["defaults"])]
            # name -> its run of each seed, in TUNING_VARIANTS' order, the variants that ran every seed
            runs = {name: [variants[name][seed] for seed in seeds]
                    for name in TUNING_VARIANTS if set(variants.get(name, {})) >= set(seeds)}
            means = {name: np.mean([run["iou"] for run in name_runs], axis=0) for name, name_runs in runs.items()}
            plateaus = plateau_counts(runs)
            rows = [f"| {name} | {means[name][MEMBRANE]:.3f} / {means[name][1]:.3f} | "
                    + ", ".join(f"{run['iou'][MEMBRANE]:.3f}" for run in name_runs) + " | "
                    + ", ".join(str(run["steps"]) for run in name_runs) + f" | {plateaus[name]} |"
                    for name, name_runs in runs.items()]
            changes = {name: seed_changes(runs["defaults"], name_runs, "iou")
                       for name, name_runs in runs.items() if name != "defaults"}
            better = [name for name, change in changes.items() if (change[:, MEMBRANE] > 0).all()]
            topics = list(dict.fromkeys(TUNING_TOPICS[name] for name in changes))
            heading = ", ".join(topics[:-1]) + " and " * (len(topics) > 1) + topics[-1]
            # runs before the sampler moved a window by up to a quarter of its side (tuning.py now records it)
            shifted = [name for name in runs if "window_shift" not in budget
                       and sets_key(TUNING_VARIANTS[name], "training.patch_shape")]
            lines += [
                f"**{heading[0].upper() + heading[1:]}.** `{budget['command']}` ({budget['machine']}, two "
                f"runs at a time with one thread each) trained densify's defaults (learning rate "
                f"{training['initial_learning_rate']:g}, {window} windows in batches of {training['batch_size']}) "
                f"and each variant, each changed alone, on `{volume}` for {minutes} minutes, seeds "
                f"{', '.join(seeds)}, in one session: membrane / cell IoU on the never-annotated voxels, "
                "mean of the seeds.", "",
                "| settings | membrane / cell IoU | membrane, each seed | steps, each seed | runs that a plateau "
                "ended before the budget |", "|---|---|---|---|---|", *rows, "",
                moved_lines(changes),
                *([f"- The runs of {' and '.join(shifted)} moved each training window by up to 8 voxels around the "
                   "voxel drawn, as densify then did for every window (a 16³ window left that voxel out of up to 1 in "
                   "6); it now moves a window by up to a quarter of its side, so they would not repeat step for step."]
                  if shifted else []),
                "- " + (f"Higher on every seed: {', '.join(better)}." if better else
                        "None scored the membrane higher than the defaults on every seed: the defaults stay."), ""]
    return lines


def next_slice_gains(record: dict) -> list[float]:
    """What one slice more per axis moved the membrane by, against two per axis: each way and seed of a volume's
    record in NEXT_SLICE_RESULTS."""
    return [seed["runs"][name]["iou"][MEMBRANE] - seed["runs"][FIRST_RUN]["iou"][MEMBRANE]
            for seed in record["seeds"].values() for name in ADDED_WAYS]


def named_slices_verdict(named: list[dict], against: dict[str, list[dict]]) -> str:
    """Whether the slices densify named (one run per seed) scored the membrane higher on every seed than each
    other way of adding a slice (name -> its runs, the seeds in the same order)."""
    def membrane(runs: list[dict]) -> list[float]:
        return [run["iou"][MEMBRANE] for run in runs]

    higher = [name for name, runs in against.items() if all(n > o for n, o in zip(membrane(named), membrane(runs)))]
    if not higher:
        return ("They were not higher on every seed, against " + " or against ".join(against)
                + ": on this volume they are no better a next annotation than either.")
    by = "; ".join("by " + ", ".join(f"{n - o:+.3f}" for n, o in zip(membrane(named), membrane(against[name])))
                   for name in higher)
    others = [f"{name} (membrane {np.mean(membrane(runs)):.3f} against {np.mean(membrane(named)):.3f}, mean of "
              "the seeds)" for name, runs in against.items() if name not in higher]
    return (f"On every seed they scored the membrane higher than {' and '.join(higher)} ({by})"
            + (f", but not than {' or '.join(others)}." if others else "."))


def next_slice_lines() -> list[str]:
    """next_slices.py's runs: two slices per axis, then one more per axis chosen three ways; nothing where it has
    not run."""
    if not NEXT_SLICE_RESULTS.exists():
        return []
    labels = {FIRST_RUN: "two slices per axis", "least sure": "+ the slices densify named",
              "widest gap": "+ the middle of the widest gap", "random": "+ a random slice"}
    lines = []
    for volume, record in json.loads(NEXT_SLICE_RESULTS.read_text())["runs"].items():
        seeds = [str(seed) for seed in seed_order(record["seeds"])]
        if not seeds:  # a command still running, or stopped before its first seed was scored
            continue
        runs = {name: [record["seeds"][seed]["runs"][name] for seed in seeds] for name in labels}
        means = {name: np.mean([run["iou"] for run in name_runs], axis=0) for name, name_runs in runs.items()}
        rows = [f"| {labels[name]} | " + ("-" if name_runs[0]["added"] is None else
                                         "; ".join(", ".join(map(str, run["added"])) for run in name_runs))
                + f" | {means[name][MEMBRANE]:.3f} / {means[name][1]:.3f} | "
                + ", ".join(f"{run['iou'][MEMBRANE]:.3f}" for run in name_runs) + " |"
                for name, name_runs in runs.items()]
        first = runs[FIRST_RUN]
        named, gap = (runs[name] for name in ADDED_WAYS[:2])
        gains = next_slice_gains(record)
        versus = [n["iou"][MEMBRANE] - g["iou"][MEMBRANE] for n, g in zip(named, gap)]
        cells = [n["iou"][1] - g["iou"][1] for n, g in zip(named, gap)]
        # the first run's membrane errors in each way's added slices, against the slice of each axis with the most
        most = sum(sum(record["seeds"][seed]["most_first_run_errors"]) for seed in seeds)
        held = {name: sum(sum(run["first_run_errors"]) for run in runs[name]) / most for name in ADDED_WAYS}
        counts = [record["seeds"][seed]["scored_voxels"] for seed in seeds]
        scored = (f"{counts[0]} voxels for each seed" if len(set(counts)) == 1 else
                  ", ".join(map(str, counts)) + " voxels")
        expected = sum(sum(run["expected_errors"]) for run in first)
        actual = sum(sum(run["first_run_errors"]) for run in named)
        same = sum(a == b for n, g in zip(named, gap) for a, b in zip(n["added"], g["added"]))
        # the other ways of adding a slice, named as the table above names them
        against = {labels[name][2:]: runs[name] for name in ADDED_WAYS[1:]}
        lines += [
            f"**Where to look next, on `{volume}`.** `{record['command']}` ({record['machine']}, two runs at a time "
            f"with one thread each) trained densify's defaults for {record['steps']} steps on `{volume}`, two "
            f"slices per axis annotated, seeds {', '.join(seeds)}; then annotated one slice more per axis, three "
            "ways, and trained again as long with the same seed. IoU on the voxels that none of a seed's runs saw "
            f"annotated ({scored}), mean of the seeds:", "",
            "| annotation | slices added (x, y, z), each seed | membrane / cell IoU | membrane, each seed |",
            "|---|---|---|---|", *rows, "",
            "- **The map's errors.** In the first run's map, the added slices held "
            + ", ".join(f"{100 * held[name]:.0f}% ({labels[name][2:]})" for name in ADDED_WAYS)
            + " as many never-annotated voxels where the map was wrong about the membrane (missed, or given to it) "
            "as the slice of each axis with the most "
            f"of them (summed over the axes and the seeds; {same} of the {3 * len(seeds)} slices named "
            f"{'was' if same == 1 else 'were'} the widest gap's own). By its own probabilities the model expected "
            f"{expected:.0f} such errors in the slices it named; its map had {actual}.",
            f"- **The next annotation.** One slice more per axis (9 slices instead of 6) moved the membrane by "
            f"{min(gains):+.3f} to {max(gains):+.3f} against two per axis, whichever way it was chosen. Against the "
            "middle of the widest gap, the slices densify named moved the membrane by "
            + ", ".join(f"{v:+.3f}" for v in versus) + " and the cells by " + ", ".join(f"{v:+.3f}" for v in cells)
            + f" (seeds {', '.join(seeds)}).",
            "- " + named_slices_verdict(named, against), ""]
    return lines


class Tried(NamedTuple):
    """One change to densify's defaults measured on the volumes of the page: what it is, the script that measured
    it, how densify offers it, and for each volume the changes it made, run by run: IoU per class less that of
    densify's defaults of the same seed, trained alike (runs x classes)."""

    what: str
    script: str
    densify: str
    changes: dict[str, np.ndarray]


#: the row options of run.py's tables that the summary of what was tried compares with "new, 12 min"
TRIED_ROWS = {"new without the plateau stop, 12 min": "training to the end of the budget",
              "new with 16 base filters, 12 min": "16 base filters instead of 8"}
NOT_OFFERED = "not offered"


def tried_weights() -> list[Tried]:
    """weights.py's square-root class weights against none at 12 minutes, paired by seed."""
    if not WEIGHT_RESULTS.exists():
        return []
    changes = {}
    for volume, runs in json.loads(WEIGHT_RESULTS.read_text()).get("12", {}).items():
        seeds, paired = paired_runs(runs, ("none", "sqrt"))
        if seeds:
            changes[volume] = paired_gains(paired)
    return [Tried("square-root class weights", "weights.py", "`--class-weights sqrt`", changes)] if changes else []


def tried_rows(results: dict[str, dict]) -> list[Tried]:
    """The 12-minute option rows of run.py's tables (TRIED_ROWS) against "new, 12 min" of the same seed, where
    both were blended alike and weighted alike."""
    tried = []
    for name, what in TRIED_ROWS.items():
        changes = {}
        for volume, volume_results in results.items():
            rows = volume_results["rows"]
            defaults = dict(runs_of(rows, "new, 12 min"))
            pairs = [(defaults[seed], row) for seed, row in runs_of(rows, name) if seed in defaults
                     and blending_of(row) == blending_of(defaults[seed])
                     and class_weighting(row) == class_weighting(defaults[seed])]
            if pairs:
                changes[volume] = seed_changes(*zip(*pairs), "iou")
        if changes:
            tried.append(Tried(what, "run.py", f"`{' '.join(ROWS[name][0])}`", changes))
    return tried


def tried_tuning() -> list[Tried]:
    """tuning.py's 12-minute variants against the defaults of the same seeds."""
    if not TUNING_RESULTS.exists():
        return []
    changes: dict[str, dict[str, list[np.ndarray]]] = {}  # variant -> volume -> its commands' changes
    for volume, budgets in json.loads(TUNING_RESULTS.read_text())["runs"].items():
        for budget in budgets.values():
            variants = budget["variants"]
            if budget["minutes"] != 12 or "defaults" not in variants:
                continue
            seeds = [str(seed) for seed in seed_order(variants["defaults"])]
            defaults = [variants["defaults"][seed] for seed in seeds]
            for name, runs in variants.items():
                if name != "defaults" and set(runs) >= set(seeds):
                    changes.setdefault(name, {}).setdefault(volume, []).append(
                        seed_changes(defaults, [runs[seed] for seed in seeds], "iou"))
    return [Tried(name, "tuning.py", "`" + " ".join(f"--set {setting}" for setting in TUNING_VARIANTS[name]) + "`",
                  {volume: np.concatenate(each) for volume, each in volumes.items()})
            for name, volumes in changes.items()]


def tried_decisions() -> list[Tried]:
    """offsets.py's decision rules at 12 minutes, each setting chosen for the best membrane IoU on the held-back
    voxels, against the argmax of the same prediction."""
    if not OFFSET_RESULTS.exists():
        return []
    record = json.loads(OFFSET_RESULTS.read_text())
    names = {"offsets": "an offset on the membrane's log-probability", "ridges": "ridge decoding of the membrane"}
    tried = []
    for field, what in names.items():
        changes = {volume: np.array([np.subtract(run[field][chosen_settings(run[field])["held-back membrane"]]
                                                 ["never_annotated"], run["offsets"]["0.0"]["never_annotated"])
                                     for run in runs])
                   for volume, minutes, runs in offset_runs(record, field) if minutes == "12"}
        if changes:
            tried.append(Tried(what + ", set for the best held-back membrane", "offsets.py", NOT_OFFERED, changes))
    return tried


def tried_watershed() -> list[Tried]:
    """watershed.py's membrane redrawn between the cells that a watershed finds, against the model's own labels."""
    if not WATERSHED_RESULTS.exists():
        return []
    volumes = json.loads(WATERSHED_RESULTS.read_text())["volumes"]
    return [Tried("a watershed finds the cells, a membrane is drawn between them", "watershed.py", NOT_OFFERED,
                  {volume: np.array([np.subtract(result["grid"][result["setting"]]["iou"], result["model"])])
                   for volume, result in volumes.items()})]


def tried_ways(script: str, path: Path, names: dict[str, str], pair: Callable[[dict, str], Pairs]) -> list[Tried]:
    """The ways of ``script``, whose record (``path``) :func:`budget_pairs` reads, each against densify's defaults
    of the same seeds: ``names``, way -> its row's name; ``pair(runs, way)`` pairs them."""
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    tried = []
    for way, name in names.items():
        changes: dict[str, list[np.ndarray]] = {}
        for _, volume, (_, defaults, runs) in budget_pairs(record, lambda runs: pair(runs, way)):
            changes.setdefault(volume, []).append(seed_changes(defaults, runs, "iou"))
        if changes:
            tried.append(Tried(name, script, NOT_OFFERED,
                               {volume: np.concatenate(each) for volume, each in changes.items()}))
    return tried


def tried_next_slices() -> list[Tried]:
    """next_slices.py's one slice more per axis, each way of choosing it, against two per axis of the same seed."""
    if not NEXT_SLICE_RESULTS.exists():
        return []
    runs = json.loads(NEXT_SLICE_RESULTS.read_text())["runs"]
    changes = {volume: np.array([np.subtract(seed["runs"][name]["iou"], seed["runs"][FIRST_RUN]["iou"])
                                 for seed in record["seeds"].values() for name in ADDED_WAYS])
               for volume, record in runs.items() if record["seeds"]}
    steps = sorted({record["steps"] for record in runs.values()})
    return [Tried(f"one slice more per axis annotated; {', '.join(map(str, steps))} steps, not 12 minutes",
                  "next_slices.py", "annotate more: densify names the slices where it is least sure",
                  changes)] if changes else []


def tried_lines(results: dict[str, dict]) -> list[str]:
    """A table of every change to densify's defaults measured on these volumes, each against the defaults of the
    same seeds, and how far the largest gain is from the goal; nothing where none was measured.

    ``results``: --volume name -> its results file's contents.
    """
    tried = (tried_weights() + tried_rows(results) + tried_tuning() + tried_decisions() + tried_watershed()
             + tried_ways("self_training.py", SELF_TRAINING_RESULTS, {way: way for way in SELF_TRAINING_WAYS},
                          self_training_pairs)
             + tried_ways("ensemble.py", ENSEMBLE_RESULTS, ENSEMBLE_ROWS, ensemble_pairs) + tried_next_slices())
    if not tried:
        return []
    volumes = [volume for volume in VOLUMES if any(volume in each.changes for each in tried)]

    def cell(changes: np.ndarray | None) -> str:
        if changes is None:
            return "-"
        mean = changes.mean(axis=0)
        return f"{signed(mean[MEMBRANE])} / {signed(mean[1])} ({len(changes)})"

    rows = [f"| {each.what} | `{each.script}` | " + " | ".join(cell(each.changes.get(volume)) for volume in volumes)
            + f" | {each.densify} |" for each in tried]
    gaps = []
    for volume in volumes:
        twelve = twelve_minutes(volume, results[volume]["rows"]) if volume in results else None
        if twelve is None or twelve.today is None or not twelve.old:
            continue
        best = max((each for each in tried if volume in each.changes),
                   key=lambda each: each.changes[volume][:, MEMBRANE].mean())
        gaps.append(f"`{volume}` {signed(2 * twelve.old[MEMBRANE] - twelve.today[MEMBRANE])} (the most in the "
                    f"table: {signed(best.changes[volume][:, MEMBRANE].mean())}, {best.what})")
    return ["What was tried beyond today's defaults: the change of the membrane / cell IoU on the never-annotated "
            "voxels against densify's defaults of the same seed and budget (12 minutes unless the row says "
            "otherwise; for the offset, the ridge decoding and the watershed, against the same model's own labels), "
            "mean over the runs (how many in brackets). Each is in full under the tables below or in the sections "
            "above. A timed run's score moves by a few hundredths from one run to the next, so a mean of one or two "
            "runs does not tell apart changes that differ by less.", "",
            "| tried | script | " + " | ".join(f"`{volume}`" for volume in volumes) + " | densify |",
            "|---|---|" + "---|" * len(volumes) + "---|", *rows, "",
            *(["What the goal still asks of the membrane beyond today's defaults at 12 minutes (twice the old IoU "
               "less theirs): " + "; ".join(gaps) + ".", ""] if gaps else [])]


def markdown() -> str:
    """The page section: how densify trains, then the thin-structure tables and the goal."""
    lines = [SECTION.strip(), "", usage_text().rstrip(), "",
             *offset_lines(), *tuning_lines(), *next_slice_lines(),
             "### A thin structure: membranes around touching cells", "",
             # the docstring's wrapped lines join, its bullets stay bullets
             "Data: " + re.sub(r"\n(?!- ) *", " ", VOLUME_DOC.split("\n\n")[1]), ""]
    results = {volume: json.loads((HERE / results_name).read_text())
               for volume, (results_name, _) in VOLUME_TABLES.items() if (HERE / results_name).exists()}
    lines += glance_lines(results) + tried_lines(results) + figure_lines(results) + summary_lines(results)
    for volume, volume_results in results.items():
        results_name, heading = VOLUME_TABLES[volume]
        lines += [f"#### {heading}", "", *table(volume_results, results_name, volume)]
    lines += [*colony_lines(), "#### The MNI152 rows", "", *mni152_lines(),
              MACHINES.read_text(encoding="utf-8").rstrip(), ""]
    body = "\n".join(lines[1:])
    return "\n".join([lines[0], "", "In this section:", "", *contents_lines(body), body])


#: a run whose membrane IoU is below this lost the class
LOST_IOU = 0.1
#: the order of colonies.py's rows in the page's table
COLONY_ORDER = ("old", "today, 5 min", "today, 12 min", "today without class weights, 5 min")
COLONY_HEADING = "A rare membrane: small colonies of touching cells in a wide field (`colonies.py`)"


class ColonyRuns(NamedTuple):
    """colonies.py's runs of the seeds that every row ran: the seeds, each row's runs of them, each row's mean IoU
    per class."""
    seeds: list[int]
    runs: dict[str, list[dict]]
    means: dict[str, np.ndarray]


def colony_record() -> dict:
    """colonies.py's results file (empty before it runs)."""
    return json.loads(COLONY_RESULTS.read_text()) if COLONY_RESULTS.exists() else {}


def colony_runs(record: dict) -> ColonyRuns | None:
    """:class:`ColonyRuns` of colonies.py's ``record``; None until every row has run."""
    runs = record.get("runs", {})
    if not all(row in runs for row in COLONY_ROWS):
        return None
    seeds = seed_order(set.intersection(*(set(runs[row]) for row in COLONY_ROWS)))
    chosen = {row: [runs[row][str(seed)] for seed in seeds] for row in COLONY_ROWS}
    return ColonyRuns(seeds, chosen, {row: np.mean([run["iou"] for run in row_runs], axis=0)
                                      for row, row_runs in chosen.items()})


def colony_goal(colonies: ColonyRuns, minutes: int) -> tuple[float, bool]:
    """Today's defaults at ``minutes`` against the old densification: the ratio of their mean membrane IoUs, and
    whether the goal holds (the membrane at least doubled, no other class more than 0.01 lower)."""
    old, today = colonies.means["old"], colonies.means[f"today, {minutes} min"]
    return today[MEMBRANE] / old[MEMBRANE], today[MEMBRANE] >= 2 * old[MEMBRANE] and max(old[:2] - today[:2]) <= 0.01


def colony_lost(colonies: ColonyRuns) -> tuple[list[int], np.ndarray]:
    """The seeds on which the old densification lost the membrane (IoU below LOST_IOU); on the others, the mean
    membrane IoU of the old densification and of today's defaults at 12 minutes (empty where it lost every seed)."""
    old, today = (np.array([run["iou"][MEMBRANE] for run in colonies.runs[row]]) for row in ("old", "today, 12 min"))
    kept = old >= LOST_IOU
    lost = [seed for seed, keeps in zip(colonies.seeds, kept) if not keeps]
    return lost, np.array([old[kept].mean(), today[kept].mean()]) if kept.any() else np.array([])


def colony_goal_lines() -> list[str]:
    """A bullet for the goal's verdict: today's defaults against the old densification on the colonies."""
    record = colony_record()
    colonies = colony_runs(record)
    if colonies is None:
        return []
    goals = {minutes: colony_goal(colonies, minutes) for minutes in (5, 12)}
    met = [f"{minutes} minutes" for minutes, (_, holds) in goals.items() if holds]
    return [f"- **A rare membrane** ([{COLONY_HEADING.split(' (')[0].lower()}](#{heading_anchor(COLONY_HEADING)}), "
            f"the membrane {100 * record['volume']['annotated_share'][MEMBRANE]:.1f}% "
            "of the annotated voxels): today's defaults score the membrane "
            + " and ".join(f"x{ratio:.2f} at {minutes} minutes" for minutes, (ratio, _) in goals.items())
            + f" the old densification's ({seed_list(colonies.seeds)}); the goal holds at "
            + (" and ".join(met) if met else "neither budget") + "." + lost_text(colonies)]


def lost_text(colonies: ColonyRuns) -> str:
    """A sentence on the seeds that the old densification lost (:func:`colony_lost`); empty where it lost none."""
    lost, kept = colony_lost(colonies)
    if not lost:
        return ""
    return (f" The old densification lost the membrane on {len(lost)} of {len(colonies.seeds)} seeds"
            + (f"; on the others today's defaults at 12 minutes score it x{kept[1] / kept[0]:.2f} the old"
               if len(kept) else "") + ".")


def colony_weights() -> str:
    """page_usage.md's field on what ``auto`` chose on the colonies, and what densify did there without weights."""
    record = colony_record()
    colonies = colony_runs(record)
    if colonies is None:
        return ""
    weighted, unweighted = colonies.runs["today, 5 min"], colonies.runs["today without class weights, 5 min"]
    shares = record["volume"]["annotated_share"]
    lost = sum(run["iou"][MEMBRANE] < LOST_IOU for run in unweighted)
    chosen = ", ".join(sorted({run["class_weights"] for run in weighted}))
    return (f"; on the small colonies of cells below (the membrane {100 * shares[MEMBRANE]:.1f}%, the cells "
            f"{100 * shares[1]:.1f}% of the annotated voxels), `{chosen}`, and without weights "
            f"densify lost the membrane on {lost} of {len(unweighted)} seeds at 5 minutes (\"A rare membrane\" below)")


def colony_lines() -> list[str]:
    """The subsection of colonies.py's runs: a table of each row's IoU per class on the never-annotated voxels (mean
    of the seeds), then today's defaults against the old densification (the goal's test) and against no class
    weights, seed by seed."""
    record = colony_record()
    lines = [f"#### {COLONY_HEADING}", "", "Data: " + re.sub(r"\n *", " ", COLONY_DOC.split("\n\n")[1]), ""]
    colonies = colony_runs(record)
    if colonies is None:
        return lines + ["Not measured yet: `python examples/thin_shell/colonies.py`.", ""]
    seeds, chosen, means = colonies
    annotated = record["volume"]["annotated_share"]
    shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in zip(CLASSES, annotated))

    def weighting(row_runs: list[dict]) -> str:
        return ", ".join(sorted({run["class_weights"] for run in row_runs}))

    table = [f"| intensity thresholds | {record['thresholds'][MEMBRANE]:.3f} | - | {record['thresholds'][1]:.3f} | "
             f"{record['thresholds'][0]:.3f} | - | - |"]
    for row in COLONY_ORDER:
        row_runs = chosen[row]
        table.append(f"| {row} | {means[row][MEMBRANE]:.3f} | "
                     + ", ".join(f"{run['iou'][MEMBRANE]:.3f}" for run in row_runs)
                     + f" | {means[row][1]:.3f} | {means[row][0]:.3f} | "
                     + ", ".join(str(run["steps"]) for run in row_runs) + f" | {weighting(row_runs)} |")
    old = means["old"]
    bullets = []
    for minutes in (5, 12):
        today = means[f"today, {minutes} min"]
        ratio, met = colony_goal(colonies, minutes)
        each = [f"x{run['iou'][MEMBRANE] / base['iou'][MEMBRANE]:.2f}" if base["iou"][MEMBRANE] else
                f"{run['iou'][MEMBRANE]:.3f} from 0"
                for base, run in zip(chosen["old"], chosen[f"today, {minutes} min"])]
        bullets.append(
            f"- **Today's defaults, {minutes} minutes, against the old densification.** Membrane x{ratio:.2f} "
            f"({old[MEMBRANE]:.3f} -> {today[MEMBRANE]:.3f}; each seed " + ", ".join(each)
            + f"), cells {signed(today[1] - old[1])}, background {signed(today[0] - old[0])}: the goal (the membrane "
            "at least doubled, no other class 0.01 lower) is " + ("met." if met else "not met."))
    lost, kept = colony_lost(colonies)
    if lost:
        bullets.append(
            f"- **The old densification lost the membrane** (IoU below {LOST_IOU}) on {seed_list(lost)}, "
            f"{len(lost)} of {len(seeds)} (membrane / cell IoU "
            + ", ".join(f"{run['iou'][MEMBRANE]:.3f} / {run['iou'][1]:.3f}"
                        for seed, run in zip(seeds, chosen["old"]) if seed in lost) + "). "
            + (f"On the other seeds today's defaults at 12 minutes score the membrane x{kept[1] / kept[0]:.2f} the "
               f"old ({kept[0]:.3f} -> {kept[1]:.3f})." if len(kept) else ""))
    unweighted, weighted = chosen["today without class weights, 5 min"], chosen["today, 5 min"]
    changes = seed_changes(unweighted, weighted, "iou")
    bullets.append(
        f"- **What the class weights give.** `auto` chose {weighting(weighted)} here. At 5 minutes, against "
        "`--class-weights none`, they moved the membrane by " + ", ".join(signed(c) for c in changes[:, MEMBRANE])
        + " and the cells by " + ", ".join(signed(c) for c in changes[:, 1]) + f" ({seed_list(seeds)}).")
    warned = []
    for row, row_runs in chosen.items():
        if row != "old":
            about = sorted({label for run in row_runs for label in run["warned"]})
            warned.append(f"{row} {sum(bool(run['warned']) for run in row_runs)} of {len(seeds)}"
                          + (f" (about the {' and the '.join(CLASSES[label] for label in about)})" if about else ""))
    bullets.append(
        "- **Warnings.** Runs that warned about a class far below the others: " + "; ".join(warned)
        + ". The old densification held no voxels back, so it scored nothing and warned of nothing.")
    commands = ", then ".join(f"`{command}`" for command in record["commands"])
    return lines + [
        f"{commands} ({record['machine']}; one thread each, two at a time). The annotated voxels: "
        f"{shares}. IoU on the never-annotated voxels, mean of {seed_list(seeds)}:", "",
        "| densification | membrane IoU | membrane, each seed | cell IoU | background IoU | steps, each seed | "
        "class weights |", "|---|---|---|---|---|---|---|", *table, "", *bullets, ""]


def usage_text() -> str:
    """The section's opening subsections (page_usage.md), its fields filled from weights.py's and ensemble.py's runs."""
    return USAGE.read_text(encoding="utf-8").format(**weight_summaries(), **lesion_fields(),
                                                    ensemble_note=ensemble_note(), colony_weights=colony_weights())


def heading_anchor(title: str) -> str:
    """The anchor that GitHub gives a heading of this title: lower case, no punctuation, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def contents_lines(text: str) -> list[str]:
    """A list of the ### and #### headings of ``text``, each a link to its heading, the #### ones under theirs."""
    lines = []
    for line in text.splitlines():
        marks = len(line) - len(line.lstrip("#"))
        if marks in (3, 4) and line[marks:marks + 1] == " ":
            title = line[marks + 1:]
            lines.append("  " * (marks - 3) + f"- [{title}](#{heading_anchor(title)})")
    return lines


def write_section() -> None:
    """Replace the section of docs/sparse_annotation.md (or add it at the end)."""
    page = DOCS.read_text(encoding="utf-8")
    if SECTION in page:
        page = page[: page.index(SECTION)]
    write_text_atomically(DOCS, page.rstrip("\n") + "\n\n" + markdown())
