"""One argument picks where training runs: TPU, several workers, GPUs or a CPU.

strategy = resolve_strategy("auto")
with strategy.scope():
    model = BertPretrainer(BertBackbone.from_preset("bert_base"))
    model.compile(optimizer=create_adamw(schedule), **compile_options(strategy))
model.fit(dataset.batch(global_batch_size(32, strategy)))
"""

import contextlib
import glob
import json
import os
import socket
import subprocess
import sys
import threading

import tensorflow as tf

from tfbert.training.precision import resolve_precision

KINDS = ("auto", "tpu", "multi_worker", "mirrored", "one_device", "cpu")


def is_tpu_strategy(strategy) -> bool:
    return type(strategy).__name__.startswith("TPUStrategy")


def is_multi_worker(strategy) -> bool:
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def strategy_name(strategy) -> str:
    """The public class name of `strategy` (MultiWorkerMirroredStrategy is
    CollectiveAllReduceStrategy inside TensorFlow)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def read_tf_config() -> dict | None:
    """The parsed `TF_CONFIG` environment variable, checked; None when unset.

    Raises a ValueError naming the problem when the JSON is malformed, has no
    `cluster`/`task`, or the task names a job or index the cluster lacks.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    example = (
        '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos}): "
            f"{text[:200]!r}. Expected for example {example}."
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ValueError(f"TF_CONFIG needs a 'cluster' object; received {text[:200]!r}.")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            "TF_CONFIG needs a 'task' with 'type' and 'index' (this process's place "
            f"in the cluster); received {task!r}. Expected for example {example}."
        )
    jobs = config["cluster"]
    members = jobs.get(task["type"])
    if not isinstance(members, list) or not members:
        raise ValueError(
            f"TF_CONFIG's task type {task['type']!r} is not a job of its cluster "
            f"(jobs: {sorted(jobs)})."
        )
    index = task["index"]
    if not isinstance(index, int) or not 0 <= index < len(members):
        raise ValueError(
            f"TF_CONFIG's task index {index!r} is outside job {task['type']!r}, which has "
            f"{len(members)} member(s) {members}; use an index in 0..{len(members) - 1}."
        )
    for job, addresses in jobs.items():
        for address in addresses if isinstance(addresses, list) else [addresses]:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"TF_CONFIG's {job} address {address!r} is not host:port.")
    return config


def free_ports(count: int) -> list[int]:
    """`count` TCP ports free on 127.0.0.1 now, for a multi-worker cluster on
    one machine (TF_CONFIG's "worker" addresses).

    Example:
        workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    """
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def split_cpu(replicas: int) -> None:
    """Splits the CPU into `replicas` logical devices (for MirroredStrategy on
    one machine, and for tests). Must run before TensorFlow uses any device."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != replicas:
            raise RuntimeError(
                f"Cannot split the CPU into {replicas} devices: TensorFlow has already "
                "started. Call resolve_strategy(..., cpu_replicas=N) before building "
                "any model or tensor."
            ) from None


_WATCHDOG = """
import os, sys, time
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(seconds)
sys.stderr.write(message + "\\n")
sys.stderr.flush()
os.kill(parent, 9)
"""


@contextlib.contextmanager
def _watchdog(seconds: float, message: str):
    """Kills this process with `message` on stderr unless the block ends within `seconds`.

    MultiWorkerMirroredStrategy's constructor connects to the other workers
    inside TensorFlow's C++ while holding the GIL, retrying for an hour: no
    Python thread or signal handler runs meanwhile, so the timer is a tiny
    separate process.
    """
    timer = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message]
    )
    try:
        yield
    finally:
        timer.kill()
        timer.wait()


@contextlib.contextmanager
def _cluster_wait(seconds: float):
    # Once connected, the constructor waits for the cluster with a dummy
    # all-reduce whose timeout (a class attribute) defaults to forever.
    from tensorflow.python.distribute import collective_all_reduce_strategy as module

    extended = module.CollectiveAllReduceExtended
    previous = extended._check_health_initial_timeout
    extended._check_health_initial_timeout = seconds
    try:
        yield
    finally:
        extended._check_health_initial_timeout = previous


def _multi_worker_strategy(cluster_timeout: float):
    config = read_tf_config()
    if config is None:
        raise ValueError(
            "kind='multi_worker' needs the TF_CONFIG environment variable describing the "
            'cluster, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", '
            '"host1:12345"]}, "task": {"type": "worker", "index": 0}}\'.'
        )
    workers = config["cluster"].get("worker", [])
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )

    message = (
        f"tfbert: not every worker of TF_CONFIG joined within {cluster_timeout:.0f} s "
        f"(workers: {workers}; this is {config['task']['type']} {config['task']['index']}). "
        "Start the same script on every worker, check the addresses and that the ports "
        "are open, or raise `cluster_timeout`. Stopping this worker."
    )
    try:
        with _watchdog(cluster_timeout, message), _cluster_wait(cluster_timeout):
            return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        if "Timeout waiting for the cluster" not in str(error):
            raise
        raise RuntimeError(message.replace(" Stopping this worker.", "")) from None


def _within(seconds: float, build):
    """`build()`, or TimeoutError when it has not returned after `seconds`
    (it goes on in a daemon thread)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = build()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if "error" in outcome:
        raise outcome["error"]
    if "value" not in outcome:
        raise TimeoutError(f"no answer within {seconds:.0f} s")
    return outcome["value"]


def _on_tpu_vm() -> bool:
    return bool(glob.glob("/dev/accel*")) or bool(glob.glob("/dev/vfio/[0-9]*"))


def _tpu_strategy(tpu, timeout: float):
    tpu = tpu or os.environ.get("TPU_NAME") or ("local" if _on_tpu_vm() else None)
    if tpu is None:
        raise RuntimeError(
            "Asked for a TPU, but none is named (tpu=None, TPU_NAME unset) and this "
            "machine is not a TPU VM (no /dev/accel*). Pass tpu='<name or grpc://address>', "
            "or use kind='auto' to fall back to GPUs/CPU."
        )

    def connect():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver

    try:
        return tf.distribute.TPUStrategy(_within(timeout, connect))
    except (TimeoutError, ValueError, RuntimeError, tf.errors.OpError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RuntimeError(
            f"Asked for TPU {tpu!r} but could not connect: {reason}. Check the name or "
            "address and that the TPU is running, or use kind='auto' to fall back to "
            "GPUs/CPU."
        ) from None


def _tpu_available(tpu) -> bool:
    return bool(tpu) or bool(os.environ.get("TPU_NAME")) or _on_tpu_vm()


def resolve_strategy(
    kind: str = "auto",
    tpu: str | None = None,
    cpu_replicas: int | None = None,
    cluster_timeout: float = 300.0,
) -> tf.distribute.Strategy:
    """A `tf.distribute.Strategy` for the hardware at hand.

    "auto" picks, in order: a TPU (`tpu` given, `TPU_NAME` set, or TPU devices
    visible), several workers (`TF_CONFIG` set), `MirroredStrategy` over two or
    more GPUs, one GPU, else the CPU. Explicit kinds: "tpu", "multi_worker",
    "mirrored", "one_device" (first GPU, else CPU) and "cpu".

    Multi-worker training gets an error, not a hang, when a worker does not
    join in `cluster_timeout`. tfbert's models and optimizers train under
    every returned strategy as on one device (`DistributedTrainer`,
    `DistributedOptimizer`); a plain Keras model keeps Keras' behaviour.

    Args:
        kind: str, default "auto". One of `KINDS`.
        tpu: str or None. TPU name or address ("local" on a TPU VM).
        cpu_replicas: int or None. With "mirrored" and no GPUs, the CPU is
            split into this many logical devices (tests, benchmarks).
        cluster_timeout: float, default 300. Seconds to wait for all workers
            to join, or for the TPU to answer.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown strategy kind {kind!r}; use one of {list(KINDS)}.")
    if cpu_replicas is not None:
        if kind not in ("mirrored", "auto") or cpu_replicas < 1:
            raise ValueError(
                "`cpu_replicas` (a positive count) splits the CPU for kind='mirrored'; "
                f"received kind={kind!r}, cpu_replicas={cpu_replicas}."
            )
        split_cpu(cpu_replicas)
        kind = "mirrored"
    if kind == "auto":
        if _tpu_available(tpu):
            kind = "tpu"
        elif read_tf_config() is not None:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) >= 2:
            kind = "mirrored"
        else:
            kind = "one_device"
    if kind == "tpu":
        return _tpu_strategy(tpu, cluster_timeout)
    if kind == "multi_worker":
        return _multi_worker_strategy(cluster_timeout)
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if kind == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def strategy_precision(strategy, precision: str = "auto") -> str:
    """The Keras dtype policy for `strategy`: "mixed_bfloat16" on TPUs, else
    `resolve_precision` (bf16-capable GPUs bfloat16, older GPUs float16 with
    loss scaling, which `compile` adds, CPUs float32 unless they have bf16
    units)."""
    if precision == "auto" and is_tpu_strategy(strategy):
        return "mixed_bfloat16"
    return resolve_precision(precision)


def global_batch_size(per_replica_batch_size: int, strategy) -> int:
    """The batch to give the dataset so that each replica gets `per_replica_batch_size`."""
    if per_replica_batch_size < 1:
        raise ValueError(f"Batch size must be positive; received {per_replica_batch_size}.")
    return per_replica_batch_size * strategy.num_replicas_in_sync


def per_replica_batch_size(global_batch_size: int, strategy) -> int:
    """Each replica's share of `global_batch_size`; it must divide evenly."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size < 1 or global_batch_size % replicas:
        lower = max(replicas, global_batch_size // replicas * replicas)
        raise ValueError(
            f"Global batch size {global_batch_size} does not split evenly over "
            f"{replicas} replicas; use a multiple of {replicas} (e.g. {lower} or "
            f"{lower + replicas})."
        )
    return global_batch_size // replicas


def compile_options(strategy) -> dict:
    """`steps_per_execution` and `jit_compile` for `Model.compile` under `strategy`.

    TPUs: XLA always, 32 steps per host call (a host round trip per step
    would starve the chip). GPUs: XLA, one step per call. Several workers:
    no XLA (collectives are placed by the runtime), one step per call.
    CPU: no XLA, which is not faster there for BERT's shapes.
    """
    if is_tpu_strategy(strategy):
        return {"steps_per_execution": 32, "jit_compile": True}
    if is_multi_worker(strategy):
        return {"steps_per_execution": 1, "jit_compile": False}
    devices = strategy.extended.worker_devices
    on_gpu = any("GPU" in device.upper() for device in devices)
    return {"steps_per_execution": 1, "jit_compile": on_gpu}


_DEVICE_DTYPES = (tf.int32, tf.float32, tf.bfloat16, tf.float16, tf.bool)


def check_dataset(dataset: tf.data.Dataset, strategy) -> tf.data.Dataset:
    """Checks that `dataset` can feed `strategy` (a strategy or a kind such as
    "tpu"); returns it unchanged.

    For TPU strategies every feature must have a fully static shape (batch
    with `drop_remainder=True`, pad to a fixed length) and a device dtype
    (int32, float, bool): no strings, which must be tokenized in `tf.data`,
    and no int64. Other strategies accept any dataset.
    """
    if not (strategy == "tpu" if isinstance(strategy, str) else is_tpu_strategy(strategy)):
        return dataset
    problems = []
    for path, spec in _flat_specs(dataset.element_spec):
        if spec.dtype == tf.string:
            problems.append(f"{path} is a string tensor: tokenize in tf.data, not in the model")
        elif spec.dtype not in _DEVICE_DTYPES:
            problems.append(f"{path} has dtype {spec.dtype.name}: cast to int32 or float32")
        if not spec.shape.is_fully_defined():
            problems.append(
                f"{path} has shape {spec.shape}: batch with drop_remainder=True and pad "
                "to a fixed sequence length"
            )
    if problems:
        raise ValueError("This dataset cannot feed a TPU:\n  " + "\n  ".join(problems))
    return dataset


def _flat_specs(spec, path="batch"):
    if isinstance(spec, dict):
        for key, value in spec.items():
            yield from _flat_specs(value, f"{path}[{key!r}]")
    elif isinstance(spec, (tuple, list)):
        for index, value in enumerate(spec):
            yield from _flat_specs(value, f"{path}[{index}]")
    else:
        yield path, spec
