"""The Python API on tiny models built here: render, its result, save against the CLI's bytes."""

import hashlib
import io
import json

import keras
import numpy as np
import pytest

import filtervis
from filtervis import objectives as obj
from filtervis.errors import LayerError, SpecError

FAST = dict(steps=8, preprocess="tf", size=16)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


def test_render_returns_the_images_and_a_record_per_filter(tiny_model):
    result = filtervis.render(tiny_model, "conv2", filters=[0, 2, 5], **FAST)
    assert [r.index for r in result.filters] == [0, 2, 5]
    assert len(result.images) == 3
    for record, image in zip(result.filters, result.images):
        assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
        assert record.status in ("done", "dead") and record.steps >= 8 and record.seconds > 0
        assert record.converged == (record.activation > 0 and record.activation >= 2 * record.noise_activation)
    assert result.images[0].std() > 0  # optimized, not a grey start


def test_save_writes_the_same_files_and_bytes_as_the_cli(tiny_model, tiny_model_file, tmp_path, cli):
    model = keras.models.load_model(tiny_model_file)
    result = filtervis.render(model, "conv2", filters="1-3", **FAST)
    folder = result.save(tmp_path / "api")
    done = cli("run", "--model", tiny_model_file, "--layer", "conv2", "--filters", "1-3", "--steps", "8",
               "--preprocess", "tf", "--size", "16", "--out", tmp_path / "cli", "--quiet")
    assert done.returncode == 0, done.stderr
    cli_folder = tmp_path / "cli" / "conv2"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in cli_folder.iterdir())
    assert _digests(folder) == _digests(cli_folder)
    assert (tmp_path / "api" / "index.html").is_file() and (tmp_path / "cli" / "index.html").is_file()
    ours, theirs = (json.loads((f / "manifest.json").read_text()) for f in (folder, cli_folder))
    assert [f["activation"] for f in ours["filters"]] == [f["activation"] for f in theirs["filters"]]
    assert ours["complete"] and ours["palette"] == "palette.png"
    assert theirs["model"]["weights"] == "own" and ours["model"]["weights"] == "memory"  # never "imagenet"
    for key in ("steps", "lr", "size", "param", "seed", "tv_weight", "objective"):
        assert ours["params"][key] == theirs["params"][key], key


def test_render_is_deterministic_and_the_palette_is_the_saved_one(tiny_model, tmp_path):
    first = filtervis.render(tiny_model, "conv1", filters=[0, 3], **FAST)
    second = filtervis.render(tiny_model, "conv1", filters=[0, 3], batch=1, **FAST)
    for a, b in zip(first.images, second.images):
        np.testing.assert_array_equal(a, b)
    folder = first.save(tmp_path)
    palette = np.asarray(first.palette())
    from PIL import Image

    np.testing.assert_array_equal(palette, np.asarray(Image.open(folder / "palette.png")))
    png = first.palette_png()  # the bytes palette.png holds
    assert png.startswith(b"\x89PNG") and png == (folder / "palette.png").read_bytes()
    shown = first._repr_png_()  # what Jupyter calls to show a Result
    assert shown.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(shown)) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), palette)


def test_render_takes_a_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(5, 3, activation="relu", name="conv")
            self.pool = keras.layers.GlobalAveragePooling2D()

        def call(self, x):
            return self.pool(self.conv(x))

    keras.utils.set_random_seed(3)
    net = Net()
    net(np.zeros((1, 16, 16, 3), np.float32))
    result = filtervis.render(net, "conv", filters=[1, 4], **FAST)
    assert [r.index for r in result.filters] == [1, 4]
    assert all(r.activation > r.noise_activation for r in result.filters)


@pytest.mark.parametrize("options, error, message", [
    (dict(steps=0), SpecError, "--steps must be 1 or more"),
    (dict(lr=-1), SpecError, "--lr must be above 0"),
    (dict(tv_weigth=1.0), SpecError, "unknown option 'tv_weigth'"),
    (dict(out="x"), SpecError, "result.save"),
    (dict(objective="neurons"), SpecError, "objective must be"),
    (dict(filters="9"), SpecError, "past the 6 filters"),
    (dict(layer="nope"), LayerError, "nope"),
    (dict(diversity=0), SpecError, "--diversity must be a whole number from 1 to 16"),
    (dict(diversity=2.5), SpecError, "--diversity must be a whole number"),
])
def test_render_options_are_checked_as_the_cli_checks_them(tiny_model, options, error, message):
    options = {"layer": "conv2", "filters": None, **FAST, **options}
    with pytest.raises(error, match=message):
        filtervis.render(tiny_model, options.pop("layer"), options.pop("filters"), **options)


def test_a_list_of_objectives_gives_one_image_each_and_raises_what_they_ask(tiny_model):
    rise = obj.channel("conv2", 1) - 0.5 * obj.channel("conv2", 4)
    fall = obj.channel("conv2", 4) - 0.5 * obj.channel("conv2", 1)
    result = filtervis.render(tiny_model, objective=[rise, fall], steps=24, preprocess="tf")
    assert [r.index for r in result.filters] == [0, 1] and len(result.images) == 2
    values = [[filtervis.evaluate(tiny_model, o, image[None], preprocess="tf")[0] for o in (rise, fall)]
              for image in result.images]
    assert values[0][0] > values[0][1] and values[1][1] > values[1][0]  # each image favours its own objective
    for record in result.filters:
        assert record.activation > record.noise_activation


def test_neuron_keeps_the_clis_meaning(tiny_model):
    result = filtervis.render(tiny_model, "conv2", filters=[2], objective="neuron", **FAST)
    centre = filtervis.evaluate(tiny_model, obj.neuron("conv2", 2), result.images[0][None], preprocess="tf")
    np.testing.assert_allclose(result.filters[0].activation, centre[0], rtol=1e-4, atol=1e-5)


def test_render_leaves_the_global_random_streams_alone(tiny_model):
    import random

    import tensorflow as tf

    random.seed(4)
    np.random.seed(4)
    generator = tf.random.get_global_generator()
    generator.reset_from_seed(4)
    before = (random.getstate(), np.random.get_state()[1].copy(), generator.state.numpy().copy())
    filtervis.render(tiny_model, "conv2", filters=[1], **FAST)
    assert random.getstate() == before[0]
    np.testing.assert_array_equal(np.random.get_state()[1], before[1])
    np.testing.assert_array_equal(tf.random.get_global_generator().state.numpy(), before[2])


def test_alpha_diversity_and_maco_save_what_the_cli_writes(tiny_model_file, tmp_path, cli):
    """--param maco --alpha --diversity 2: two RGBA pictures per filter (filter_NNNN_K.png), one palette row
    per filter over a checkerboard, a manifest that says what the alpha is and lists each picture; the
    library writes the same bytes."""
    from PIL import Image

    options = ["--param", "maco", "--alpha", "--diversity", "2", "--filters", "1-2", "--steps", "16", "--size", "16",
               "--preprocess", "tf", "--no-rescue"]
    done = cli("run", "--model", tiny_model_file, "--layer", "conv2", *options, "--out", tmp_path / "cli", "--quiet")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "cli" / "conv2"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["filter_0001_0.png", "filter_0001_1.png", "filter_0002_0.png", "filter_0002_1.png",
                     "manifest.json", "palette.png"]
    pictures = [np.asarray(Image.open(folder / name)) for name in names[:4]]
    assert all(p.shape == (16, 16, 4) and p[..., 3].max() == 255 for p in pictures)
    assert not np.array_equal(pictures[0][..., :3], pictures[1][..., :3])  # two pictures of filter 1
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "gradient" in manifest["alpha"] and manifest["params"]["diversity"] == 2
    assert manifest["params"]["param"] == "maco" and manifest["params"]["alpha"] is True
    entry = manifest["filters"][0]
    assert [v["file"] for v in entry["variants"]] == ["filter_0001_0.png", "filter_0001_1.png"]
    assert entry["converged"] == all(v["converged"] for v in entry["variants"])
    with Image.open(folder / "palette.png") as palette:
        assert palette.mode == "RGB"
        width, height = palette.size
    assert width < 2.5 * 16 + 20 and height > 2 * 16  # two columns (a filter's pictures), two rows
    model = keras.models.load_model(tiny_model_file)
    result = filtervis.render(model, "conv2", filters="1-2", steps=16, size=16, preprocess="tf", param="maco",
                              alpha=True, diversity=2, rescue=False)
    api_folder = result.save(tmp_path / "api")
    assert _digests(api_folder) == _digests(folder)


def test_alpha_on_a_grey_model_gives_grey_pictures_with_alpha(odd_model, tmp_path):
    model = keras.models.load_model(odd_model("grey"))
    result = filtervis.render(model, "conv", filters="0-1", steps=8, preprocess="tf", alpha=True)
    assert all(image.shape == (16, 16, 2) for image in result.images)
    folder = result.save(tmp_path)
    from PIL import Image

    with Image.open(folder / "filter_0000.png") as png, Image.open(folder / "palette.png") as palette:
        assert png.mode == "LA" and palette.mode == "L"


def test_diversity_pushes_a_filters_pictures_apart(tiny_model):
    """--diversity 3: picture k starts where a run at seed k * VARIANT_SEED_STRIDE starts, so without the
    penalty the two would be equal; with it the pictures differ from those, and their layer responses
    are further apart than those of the three independent pictures."""
    import tensorflow as tf

    from filtervis import measures, models, targets

    options = dict(steps=48, preprocess="tf", size=16, rescue=False, filters=[0, 5])
    diverse = filtervis.render(tiny_model, "conv2", diversity=3, **options)
    seeds = [filtervis.render(tiny_model, "conv2", seed=k * targets.VARIANT_SEED_STRIDE, **options) for k in range(3)]
    images = np.stack([v.image for r in diverse.filters for v in r.variants])  # filter 0's three, then 5's
    alone = np.stack([seeds[k].images[i] for i in range(2) for k in range(3)])
    assert images.shape == alone.shape == (6, 16, 16, 3)
    assert all(not np.array_equal(a, b) for a, b in zip(images, alone))  # the penalty acted on every picture
    cut = models.cut(tiny_model, "conv2")

    def alike(stack):  # the layer's responses (every filter's mean activation), as benchmarks/quality.py takes them
        inputs = models.preprocess_fn("tf")(tf.constant(stack.astype(np.float32) / 255.0))
        responses = tf.reduce_mean(cut.activation(cut.forward(inputs)), axis=[1, 2])
        return float(measures.group_similarity(responses, 3).numpy().mean())

    assert 1 - alike(images) > 2 * (1 - alike(alone))  # at least twice as far apart (cosine distance)
