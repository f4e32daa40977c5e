"""Draws docs/architecture.png: the stages of the data flow and the modules that own them.

    python docs/architecture_figure.py

Reference modules (3DUnetCNN's paths and names) are drawn in bold; the rest are the core
modules they call. Keep STAGES in step with docs/architecture.md.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# (stage, what flows out of it, modules; a leading "*" marks a reference module)
STAGES = [
    ("files", "NIfTI images\nper subject", ["subjects", "demo", "label_conventions", "*utils/utils",
                                             "*utils/sitk_utils", "*utils/nilearn_custom_utils"]),
    ("subjects", "checked, cropped,\nresized arrays", ["subject_images", "intensity_checks", "*normalize",
                                                      "channel_statistics", "data_checks"]),
    ("HDF5 store", "/data /truth /affine\n+ attributes", ["*data", "hdf5_store", "pickle_guard", "fileio"]),
    ("samples", "batches in the\nmodel's format", ["*generator", "dataset", "training_data", "splits", "seeds",
                                                  "sampling", "samples", "labels", "batches", "*augment",
                                                  "augmentation/", "*utils/patches"]),
    ("model", "Keras model", ["*model/unet", "*model/isensee2017", "model/up_convolution", "*metrics",
                              "losses", "dice", "layout", "tasks", "model_from_config", "reference_files",
                              "reference_models", "instance_normalization"]),
    ("training", "model file,\nlog, state", ["*training", "callbacks", "pipeline", "preparation", "run_state",
                                             "run_lock", "precision", "distribute", "distribute_tf",
                                             "distribute_jax", "schedule", "step_loop"]),
    ("predictor", "probabilities,\nlabel maps", ["predictor", "*prediction", "sliding_window",
                                                 "predict_functions", "tta", "label_maps", "regions",
                                                 "inference_io", "export", "exported_models", "sparse",
                                                 "sparse_sampler", "densify", "densify_holdout",
                                                 "densify_monitor"]),
    ("evaluation", "scores, CSV,\npictures", ["evaluation", "lesion_scores", "visualize"]),
]
SHARED = ["config", "config_types", "config_parsing", "recipes", "checks", "errors", "modalities"]
WIRING = ["commands/ (train, predict, densify, make_sparse_labels, convert_model, convert_split, export)",
          "cli", "native_logs", "onednn", "scripts/", "brats/"]


def draw(path: Path) -> None:
    """Writes the figure as PNG to ``path``."""
    n = len(STAGES)
    width, gap, top = 1.95, 0.3, 5.9
    fig, ax = plt.subplots(figsize=(18.5, 7.8))
    ax.set_xlim(-0.2, n * (width + gap))
    ax.set_ylim(-1.3, top + 0.9)
    ax.axis("off")
    for i, (stage, output, modules) in enumerate(STAGES):
        x = i * (width + gap)
        ax.add_patch(FancyBboxPatch((x, top - 0.55), width, 0.55, boxstyle="round,pad=0.03",
                                    facecolor="#2b6cb0", edgecolor="none"))
        ax.text(x + width / 2, top - 0.275, stage, ha="center", va="center", color="white", fontsize=12,
                weight="bold")
        ax.add_patch(FancyBboxPatch((x, 0.35), width, top - 1.05, boxstyle="round,pad=0.03",
                                    facecolor="#ebf4ff", edgecolor="#90cdf4"))
        for j, module in enumerate(modules):
            reference = module.startswith("*")
            ax.text(x + 0.08, top - 0.85 - 0.31 * j, module.lstrip("*"), ha="left", va="center", fontsize=8.8,
                    family="monospace", weight="bold" if reference else "normal",
                    color="#1a202c" if reference else "#4a5568")
        if i < n - 1:
            ax.add_patch(FancyArrowPatch((x + width + 0.02, top - 0.275), (x + width + gap - 0.02, top - 0.275),
                                         arrowstyle="-|>", mutation_scale=14, color="#2d3748"))
            ax.text(x + width + gap / 2, top + 0.22, output, ha="center", va="bottom", fontsize=7.5,
                    color="#2d3748")
    ax.text(0, -0.1, "Shared by all stages: " + ", ".join(SHARED),
            ha="left", va="center", fontsize=9.5, family="monospace", color="#2d3748")
    ax.text(0, -0.5, "Wiring the stages together from a config: " + ", ".join(WIRING),
            ha="left", va="center", fontsize=9.5, family="monospace", color="#2d3748")
    ax.text(0, -0.95, "bold: the reference's module paths and public names (thin calls of the core);  "
            "regular: core modules, one job each", ha="left", va="center", fontsize=9.5, color="#2d3748")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(__file__).resolve().parent / "architecture.png")
