"""Runs a trainer's main() in a fresh process, optionally on N logical CPU devices
(used by test_distribute). Usage: dist_worker.py MODULE ARGS... (MODULE: train or
anomaly.train); LOGICAL_CPUS=N splits the CPU into N devices first."""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    if os.environ.get("LOGICAL_CPUS"):
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"]))
    sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))
