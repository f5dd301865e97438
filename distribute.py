"""tf.distribute for both trainers (the predictor's train.py and anomaly/train.py).

    --strategy none         one device (the default strategy)
    --strategy mirrored     MirroredStrategy over all local GPUs (or logical CPUs)
    --strategy multiworker  MultiWorkerMirroredStrategy, cluster and task from TF_CONFIG
    --strategy auto         multiworker if TF_CONFIG is set, mirrored if several GPUs, else none

--batch-size is per replica: the global batch is batch_size x replicas. Keep
--lr for up to a few replicas; for more, scale it linearly with the global
batch (and consider a warm-up), the usual rule for synchronous data parallelism.

Keras 3's Model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585,
open for Keras 3.15): it all-reduces a raw input batch just to infer shapes, and
reduces each scalar log with `axis=0`. `patch_keras_multiworker` replaces those
two steps with what they are meant to do -- take this worker's first batch for
shapes; average every scalar log across all replicas of all workers, so each
worker's callbacks (early stopping, LR schedule) see the same numbers and keep
the workers in step. Gradients, variables and optimizer updates are untouched
and go through the strategy as usual. It is applied only for that strategy.
"""

from __future__ import annotations

import os

from cli import UserError

STRATEGIES = ("auto", "none", "mirrored", "multiworker")


def make_strategy(name: str):
    """The tf.distribute strategy for --strategy NAME (see the module docstring).
    On another Keras backend (JAX) only `auto` and `none` exist: one device."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name}: choose one of {', '.join(STRATEGIES)}")
    import keras

    if keras.backend.backend() != "tensorflow":
        if name not in ("auto", "none"):
            raise UserError(f"--strategy {name} needs the TensorFlow backend "
                            f"(KERAS_BACKEND={keras.backend.backend()})")
        return OneDevice()
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "none"
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if not os.environ.get("TF_CONFIG"):
        raise UserError("--strategy multiworker needs TF_CONFIG (cluster and task) in the environment")
    patch_keras_multiworker()
    return tf.distribute.MultiWorkerMirroredStrategy()


class OneDevice:
    """The no-op strategy of a non-TensorFlow backend: one replica, no scope."""

    num_replicas_in_sync = 1

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


def strategy_name(strategy) -> str:
    """The public class name (MultiWorkerMirroredStrategy's instances are
    CollectiveAllReduceStrategy internally)."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def global_batch(strategy, batch_size: int) -> int:
    """The global batch for a per-replica `batch_size`; says so when there are
    several replicas."""
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        print(f"{strategy_name(strategy)}: {replicas} replicas, global batch {batch_size * replicas}",
              flush=True)
    return batch_size * replicas


def worker_info(strategy) -> tuple[int, bool]:
    """(worker index, is chief) of this process; (0, True) outside a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 0, True
    index = resolver.task_id or 0
    return index, resolver.task_type == "chief" or (resolver.task_type == "worker" and index == 0)


def chief_out(out: str, strategy) -> str:
    """The folder this process writes to: `out` on the chief, `out/.workerN` elsewhere
    (the other workers' files are identical copies; keeping them apart avoids two
    processes renaming over the same file)."""
    worker, chief = worker_info(strategy)
    return out if chief else os.path.join(out, f".worker{worker}")


def patch_keras_multiworker() -> None:
    """Works around keras-team/keras#20585 (see the module docstring). Idempotent."""
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_convlstm_multiworker_patch", False):
        return
    needed = ("TensorFlowTrainer", "reduce_per_replica", "_collective_all_reduce_multi_worker",
              "_is_per_replica_instance")
    missing = [n for n in needed if not hasattr(trainer, n)]
    if missing or not hasattr(trainer.TensorFlowTrainer, "_symbolic_build"):
        raise UserError("this Keras version changed the internals the multi-worker fix relies on "
                        f"(missing {', '.join(missing) or '_symbolic_build'}); install the Keras range in "
                        "requirements.txt or use --strategy mirrored")

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if trainer._is_per_replica_instance(v) else v,
                values)
        return keras_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    trainer._convlstm_multiworker_patch = True
