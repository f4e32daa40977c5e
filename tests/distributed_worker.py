"""Subprocess body of the distribution tests: a backend and its devices are fixed per process.

``python distributed_worker.py local OUT [plain,bn]`` trains the tiny U-Net on one device and then
under ``mirrored`` over two local devices (TensorFlow: two logical CPUs, configured here before
TensorFlow starts; JAX: ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` set by the caller),
without (``plain``) and with (``bn``) batch normalisation. TensorFlow 2.21 fails on a second
``MirroredStrategy`` in one process (a collective shape mismatch), so there each variant needs its
own process. ``python distributed_worker.py multi_worker OUT`` is one of two worker
processes (``TF_CONFIG`` or the ``KERAS_DISTRIBUTION_*`` variables set by the caller). Each run writes
``OUT/<name>.json`` (per-step training losses, validation losses as ``fit`` reports them and, but
for ``multi_worker``, as the model computes them directly on the validation batch) and ``OUT/<name>.npy`` (final
weights, flattened).

Every run sees the same data in the same order: one global batch of 4 per step, alternating between
two fixed batches, so a step is an epoch and the history holds the loss of every step.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GLOBAL_BATCH = 4
STEPS = 4


def arrays(seed, n):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((n, 16, 16, 16, 1), dtype=np.float32)
    y = np.stack([x[..., 0] > 0.6, x[..., 0] < 0.3], axis=-1).astype("float32")
    # The second half of every batch is brighter: batch statistics of a half differ from the batch's.
    return x * np.where(np.arange(n) % GLOBAL_BATCH < GLOBAL_BATCH // 2, 1, 3).astype(np.float32)[:, None, None, None, None], y


def batches(seed, n):
    """A PyDataset of one global batch per epoch, batch ``epoch % (n / GLOBAL_BATCH)``."""
    import keras

    x, y = arrays(seed, n)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = -1  # fit calls on_epoch_end once when it starts

        def __len__(self):
            return 1

        def __getitem__(self, index):
            start = self.epoch % (n // GLOBAL_BATCH) * GLOBAL_BATCH
            return x[start:start + GLOBAL_BATCH], y[start:start + GLOBAL_BATCH]

        def on_epoch_end(self):
            self.epoch += 1

    return Batches()


def build(batch_norm):
    import keras

    from unet3d_keras.model import unet_model_3d

    keras.utils.set_random_seed(7)
    return unet_model_3d((16, 16, 16, 1), n_labels=2, depth=2, n_base_filters=4, initial_learning_rate=1e-2,
                         batch_normalization=batch_norm, metrics=None)


def flat_weights(model):
    import numpy as np

    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def devices_used(model):
    import keras

    if keras.backend.backend() == "jax":
        return len(model.weights[0].value.sharding.device_set)
    return model.distribute_strategy.num_replicas_in_sync


def own_validation_loss(record):
    """A callback appending the model's own loss on the validation batch, computed directly, at each epoch's end."""
    import keras

    x, y = arrays(1, GLOBAL_BATCH)

    class OwnLoss(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record.append(float(keras.ops.convert_to_numpy(keras.ops.mean(self.model.loss(y, self.model(x))))))

    return OwnLoss()


def train(out_dir, name, distribution, batch_norm=False, devices=None):
    import numpy as np

    from unet3d_keras.distribute import fit, is_chief

    own = []
    callbacks = [own_validation_loss(own)] if distribution != "multi_worker" else None
    model, history = fit(lambda: build(batch_norm), distribution, batches(0, 8), batches(1, GLOBAL_BATCH),
                         global_batch_size=GLOBAL_BATCH, epochs=STEPS, verbose=0, devices=devices, callbacks=callbacks)
    np.save(os.path.join(out_dir, f"{name}.npy"), flat_weights(model))
    result = {"loss": history.history["loss"], "val_loss": history.history["val_loss"], "own_val_loss": own,
              "chief": is_chief(), "devices": devices_used(model)}
    with open(os.path.join(out_dir, f"{name}.json"), "w") as handle:
        json.dump(result, handle)


def first_step_loss_on_halves(out_dir):
    """The first-step loss with batch normalisation on each half of the batch, averaged (computed on one device).

    That is what two replicas compute: each normalises its half with the half's own statistics.
    """
    import keras

    model = build(batch_norm=True)
    x, y = arrays(0, 8)
    halves = [keras.ops.mean(model.loss(y[i:i + 2], model(x[i:i + 2], training=True))) for i in (0, 2)]
    with open(os.path.join(out_dir, "bn_halves.json"), "w") as handle:
        json.dump({"loss": float(keras.ops.convert_to_numpy(sum(halves) / 2))}, handle)


def main(mode, out_dir, variants="plain,bn"):
    import keras
    import numpy as np

    if mode == "local":
        devices = None
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            devices = ["/cpu:0", "/cpu:1"]
        for variant in variants.split(","):
            batch_norm = variant == "bn"
            suffix = "_bn" if batch_norm else ""
            np.save(os.path.join(out_dir, f"initial{suffix}.npy"), flat_weights(build(batch_norm)))
            train(out_dir, "one_device" + suffix, "none", batch_norm)
            train(out_dir, "mirrored" + suffix, "mirrored", batch_norm, devices)
            if batch_norm:
                first_step_loss_on_halves(out_dir)
    else:
        from unet3d_keras.distribute import initialize, is_chief

        initialize("multi_worker")
        train(out_dir, f"multi_worker_{0 if is_chief() else 1}", "multi_worker")


if __name__ == "__main__":
    main(*sys.argv[1:])
