"""Subprocess body of the distribution tests (tf.distribute needs a fresh process)."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def batches(seed, n, batch_size):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((n, 16, 16, 16, 1)).astype("float32")
    y = np.stack([x[..., 0] > 0.6, x[..., 0] < 0.3], axis=-1).astype("float32")
    while True:
        for start in range(0, n, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]


def build():
    import keras

    from unet3d_keras.model import unet_model_3d

    keras.utils.set_random_seed(7)
    return unet_model_3d((16, 16, 16, 1), n_labels=2, depth=2, n_base_filters=4, initial_learning_rate=1e-2,
                         metrics=None)


def main(mode, out_dir):
    import numpy as np
    import tensorflow as tf

    from unet3d_keras.distribute import fit_multi_worker, get_strategy, is_chief, worker_path
    from unet3d_keras.training import get_callbacks

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = build()
        history = model.fit(batches(0, 8, 4), steps_per_epoch=2, epochs=2, verbose=0,
                            validation_data=batches(1, 4, 4), validation_steps=1)
        logs = history.history
    else:
        strategy = get_strategy("multi_worker")
        model_file = worker_path(os.path.join(out_dir, "model.keras"))
        callbacks = get_callbacks(model_file, logging_file=worker_path(os.path.join(out_dir, "training.log")),
                                  verbosity=0)
        model, history = fit_multi_worker(build, strategy, batches(0, 8, 4), batches(1, 4, 4), steps_per_epoch=2,
                                          validation_steps=1, epochs=3, global_batch_size=4, callbacks=callbacks)
        logs = history.history
    weights = np.concatenate([np.ravel(w) for w in model.get_weights()])
    index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    np.save(os.path.join(out_dir, f"weights_{index}.npy"), weights)
    with open(os.path.join(out_dir, f"result_{index}.json"), "w") as handle:
        json.dump({"replicas": strategy.num_replicas_in_sync, "history": logs, "chief": is_chief()}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
