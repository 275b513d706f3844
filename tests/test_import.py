"""`import tfbert` changes nothing of Keras: each check runs in fresh processes."""

import json
import os
import subprocess
import sys

import numpy as np

_SNAPSHOT = """
import json, os, sys
import keras

def snapshot():
    state = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "keras" or name.startswith("keras.")):
            continue
        for attr, value in list(vars(module).items()):
            state[f"{name}.{attr}"] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for key, member in list(vars(value).items()):
                    state[f"{name}.{attr}.{key}"] = id(member)
    return state

before = snapshot()
import tfbert, tfbert.layers, tfbert.models, tfbert.text, tfbert.training  # noqa: E401
after = snapshot()
# Modules Keras imports lazily may add names; nothing present may change, and
# no Keras class may gain an attribute.
changed = sorted(key for key, value in before.items() if after.get(key) != value)
classes = {key.rsplit(".", 1)[0] for key in before}
added = sorted(key for key in set(after) - set(before) if key.rsplit(".", 1)[0] in classes)
print(json.dumps({"checked": len(before), "changed": changed, "added": added}))
"""

_TRAIN = """
import sys
import numpy as np
if sys.argv[2] == "with-tfbert":
    import tfbert  # noqa: F401
import keras

keras.utils.set_random_seed(7)
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 12)).astype("float32")
y = (x[:, :3].sum(axis=1, keepdims=True) > 0).astype("float32")
model = keras.Sequential([
    keras.Input((12,)),
    keras.layers.Dense(16, activation="gelu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(1),
])
optimizer = keras.optimizers.AdamW(1e-2, global_clipnorm=0.5, gradient_accumulation_steps=2)
model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True))
model.fit(x, y, batch_size=16, epochs=3, verbose=0)
np.savez(sys.argv[1], *[np.asarray(w) for w in model.get_weights()])
"""


def _python(code, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_tfbert_leaves_every_keras_class_and_function_untouched():
    report = json.loads(_python(_SNAPSHOT).strip().splitlines()[-1])
    assert report["checked"] > 10_000  # Keras' modules, classes and their members
    assert report["changed"] == [] and report["added"] == []


def test_a_keras_model_trains_bit_identically_with_and_without_tfbert(tmp_path):
    # Clipping, gradient accumulation and dropout: the code paths tfbert's
    # multi-replica fixes cover must stay Keras' own on one device.
    for kind in ("without-tfbert", "with-tfbert"):
        _python(_TRAIN, str(tmp_path / f"{kind}.npz"), kind)
    with np.load(tmp_path / "without-tfbert.npz") as a, np.load(tmp_path / "with-tfbert.npz") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
