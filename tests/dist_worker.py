"""Runs train.main in a fresh process, optionally on 2 logical CPU devices (used by test_distribute)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    if os.environ.get("LOGICAL_CPUS"):
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"]))
    import train

    sys.exit(train.main(sys.argv[1:]))
