"""TensorFlow's engine for ``training.distribution``: tf.distribute.

``mirrored`` uses ``tf.distribute.MirroredStrategy`` over the devices of one
machine with Keras's own ``fit`` (:func:`fit_mirrored`), which validates each
epoch on a one-device copy of the model (:class:`Validation`). ``multi_worker`` uses
``tf.distribute.MultiWorkerMirroredStrategy`` driven by ``TF_CONFIG``; Keras 3
``fit`` fails under that strategy (keras-team/keras#20585, "Attempt to convert
a value (PerReplica...)"), so :func:`fit_multi_worker` runs a custom step with
``strategy.run`` over ``strategy.experimental_distribute_dataset`` and the
Keras optimizer's ``apply_gradients``, and drives the same Keras callbacks as
``fit`` (checkpoints, CSV log, learning-rate schedule, early stopping, backup
and restore). The batch size is the global batch, split across replicas.

This module imports TensorFlow on use; nothing else in the package needs it to.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable

import keras
import numpy as np

from .callbacks import ResumableBackup

logger = logging.getLogger(__name__)


def _tensorflow():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "training.distribution needs the TensorFlow backend (tf.distribute); "
            f"the active Keras backend is {keras.backend.backend()!r}"
        )
    import tensorflow as tf  # why: absent where Keras runs on JAX or PyTorch; only tf.distribute needs it

    return tf


def get_strategy(distribution: str, devices: list[str] | None = None):
    """The tf.distribute strategy for a ``training.distribution`` setting.

    Args:
        distribution: ``none``, ``mirrored`` or ``multi_worker`` (checked by the caller).
        devices: Devices for ``mirrored`` (all local GPUs, else the CPU, when None).

    Returns:
        A strategy, or None for ``none``.
    """
    if distribution == "none":
        return None
    tf = _tensorflow()
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if "TF_CONFIG" not in os.environ:
        raise ValueError(
            "training.distribution multi_worker needs the TF_CONFIG environment variable describing the "
            'cluster, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _as_dataset(tf, batches: Iterable, input_shape, target_shape, global_batch_size: int):
    """A tf.data pipeline over Python batches ``(x, y)`` of the global batch size."""

    def generate():
        if isinstance(batches, keras.utils.PyDataset):
            while True:
                # Like Keras's fit, which calls on_epoch_end once when it starts: the same batches.
                batches.on_epoch_end()
                for index in range(len(batches)):
                    yield batches[index]
        else:
            yield from batches

    signature = (
        tf.TensorSpec((None, *input_shape), tf.float32),
        tf.TensorSpec((None, *target_shape), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # Every worker produces the same global batches; DATA sharding splits each one across replicas.
    dataset = dataset.unbatch().batch(global_batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(2)


class Validation(keras.callbacks.Callback):
    """Evaluates a one-device copy of the model at the end of each epoch and adds ``val_<name>`` to the logs.

    It stands in for ``fit``'s ``validation_data`` under ``MirroredStrategy``, where Keras 3.15 with
    TensorFlow 2.21 sometimes reported a wrong validation loss from the second epoch on (the first
    replica's share; measured in docs/distributed.md), and a fresh distributed ``evaluate`` each
    epoch did too. Each epoch's weights are copied into a model built outside the strategy and
    Keras's own ``evaluate`` runs there, on TensorFlow's default device (the first GPU): the same
    batches, losses and metrics as ``fit`` on one device. That device holds the copy's weights too
    and runs the forward pass of a whole global batch.

    Must come first among the callbacks, so that the others (checkpoints, early stopping, the CSV
    log, the progress bar) read the ``val_`` values it adds.

    Args:
        validation: Global validation batches (a ``PyDataset``).
        callbacks: The other callbacks; they receive the evaluation's ``on_test_*`` calls, as
            from ``fit``.
    """

    def __init__(self, validation: keras.utils.PyDataset, callbacks: list[keras.callbacks.Callback]):
        super().__init__()
        self.validation = validation
        self.callbacks = list(callbacks)
        self.copy: keras.Model | None = None
        self.others: keras.callbacks.CallbackList | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Outside any strategy scope, the copy's variables are plain one-device variables.
        self.copy = keras.models.clone_model(self.model)
        self.copy.compile_from_config(self.model.get_compile_config())
        # Without a model: fit has set the callbacks' model, and setting it again resets state (TensorBoard starts
        # new event files). A CallbackList also keeps evaluate from giving them the copy.
        self.others = keras.callbacks.CallbackList(self.callbacks)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.copy.set_weights(self.model.get_weights())
        results = self.copy.evaluate(self.validation, verbose=0, callbacks=self.others, return_dict=True)
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in results.items()})


def fit_mirrored(
    model_fn: Callable[[], keras.Model],
    devices: list[str] | None,
    training: keras.utils.PyDataset,
    validation: keras.utils.PyDataset,
    callbacks: list[keras.callbacks.Callback] | None = None,
    **options,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train under ``MirroredStrategy`` with Keras's ``fit``, validating through :class:`Validation`.

    Args:
        model_fn: Builds and compiles the model; called inside the strategy's scope.
        devices: The strategy's devices (all local GPUs, else the CPU, when None).
        training: Global training batches.
        validation: Global validation batches.
        callbacks: Keras callbacks.
        **options: Passed to ``fit`` (epochs, initial_epoch, verbose, shuffle).

    Returns:
        ``(model, history)``.
    """
    with get_strategy("mirrored", devices).scope():
        model = model_fn()
    callbacks = list(callbacks or [])
    return model, model.fit(training, callbacks=[Validation(validation, callbacks), *callbacks], **options)


def fit_multi_worker(
    model_fn: Callable[[], keras.Model],
    strategy,
    training_batches: Iterable,
    validation_batches: Iterable,
    steps_per_epoch: int,
    validation_steps: int,
    epochs: int,
    global_batch_size: int,
    callbacks: list[keras.callbacks.Callback] | None = None,
    initial_epoch: int = 0,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train under a multi-worker strategy with a custom step, like ``fit``.

    Args:
        model_fn: Builds and compiles the model (loss and optimizer); it is
            called inside the strategy's scope. The loss must return one
            value per batch item (the project's losses do).
        strategy: A ``MultiWorkerMirroredStrategy`` (any strategy works).
        training_batches: Endless iterable or ``PyDataset`` of global
            batches ``(x, y)`` in the model's data format; every worker
            must produce the same sequence. A ``PyDataset`` advances its
            epoch as in ``fit`` and must already stand at the first epoch
            (as for ``fit(initial_epoch=...)``); an iterable is read forward
            over the epochs before it.
        validation_batches: Same for validation.
        steps_per_epoch: Training steps per epoch.
        validation_steps: Validation steps per epoch.
        epochs: Last epoch (exclusive), as in ``fit``.
        global_batch_size: Samples per step over all replicas.
        callbacks: Keras callbacks; they see the same epoch logs as in
            ``fit`` (``loss``, ``val_loss``, ``learning_rate``).
        initial_epoch: First epoch, unless a :class:`ResumableBackup` in
            ``callbacks`` restores a later one.

    Returns:
        ``(model, history)``.
    """
    tf = _tensorflow()
    with strategy.scope():
        model = model_fn()
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
    loss_fn = model.loss
    if global_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"training.batch_size {global_batch_size} must be a multiple of the "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    input_shape = tuple(model.input_shape[1:])
    target_shape = tuple(model.output_shape[1:])
    train_iter = iter(strategy.experimental_distribute_dataset(
        _as_dataset(tf, training_batches, input_shape, target_shape, global_batch_size)))
    val_iter = iter(strategy.experimental_distribute_dataset(
        _as_dataset(tf, validation_batches, input_shape, target_shape, global_batch_size)))

    def replica_loss(x, y, training):
        prediction = model(x, training=training)
        per_item = loss_fn(y, prediction)
        loss = tf.nn.compute_average_loss(per_item, global_batch_size=global_batch_size)
        if training and model.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        return loss

    @tf.function
    def train_step(iterator):
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = replica_loss(x, y, True)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        x, y = next(iterator)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(step, args=(x, y)), axis=None)

    @tf.function
    def validation_step(iterator):
        x, y = next(iterator)
        per_replica = strategy.run(lambda a, b: replica_loss(a, b, False), args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [history], add_history=False, add_progbar=False, model=model,
        epochs=epochs, steps=steps_per_epoch, verbose=0,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    restored = [c.resumed_epoch for c in callbacks or [] if isinstance(c, ResumableBackup) and c.resumed_epoch]
    start = restored[-1] if restored else initial_epoch
    # A restored run continues the data stream where the interrupted one stood: a PyDataset is
    # positioned by its caller, as for fit(initial_epoch=...); a plain iterable is read forward.
    if not isinstance(training_batches, keras.utils.PyDataset):
        for _ in range(start * steps_per_epoch):
            next(train_iter)
    if not isinstance(validation_batches, keras.utils.PyDataset):
        for _ in range(start * validation_steps):
            next(val_iter)
    logs: dict = {}
    for epoch in range(start, epochs):
        callback_list.on_epoch_begin(epoch)
        losses = []
        for batch in range(steps_per_epoch):
            callback_list.on_train_batch_begin(batch)
            losses.append(float(train_step(train_iter)))
            callback_list.on_train_batch_end(batch, {"loss": float(np.mean(losses))})
        val_losses = [float(validation_step(val_iter)) for _ in range(validation_steps)]
        logs = {
            "loss": float(np.mean(losses)),
            "val_loss": float(np.mean(val_losses)) if val_losses else float("nan"),
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
        }
        callback_list.on_epoch_end(epoch, logs)
        logger.info("epoch %d: %s", epoch + 1, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model, history
