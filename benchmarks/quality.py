"""Picture quality and cost of filtervis against keras-vis-style pixels + TV and tf-keras-vis, one run.

    PYTHONPATH=. python benchmarks/quality.py --layer block5_conv3 --size 128 --filters random:16 --seed 0

Every tool renders the same filters of VGG16 (`--weights hed`, offline) in its own subprocess (so its
whole-process time counts: start-up, model building, tracing); the PNGs it writes are then scored as a
user gets them: read back, caffe-preprocessed, fed to the real VGG16; target = the spatial mean of the
filter's activation (after its ReLU).

- converged: target > 0 and at least 2x the filter's target on uniform noise.
- strength:  target / the best target over natural-image crops of the same size (skimage.data photos).
- retention: min of target after a 10% zoom, a 1-pixel Gaussian blur and a 5-degree rotation, / target.
- cost:      whole-process seconds per filter / seconds of one bare forward + input-gradient pass per
             filter-step (the cut model, same batch), measured in this run between the tools.
"""

from __future__ import annotations

import argparse
import json
import os
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
        return self.targets(natural_crops(self.size)).max(axis=0)

    def perturbed(self, image: np.ndarray) -> list[np.ndarray]:
        """The three retention perturbations of a uint8 image: 10% zoom, 1-px Gaussian blur, 5-degree rotation."""
        from PIL import Image, ImageFilter

        pil = Image.fromarray(image)
        size = self.size
        margin = size * (1 - 1 / 1.1) / 2
        zoom = pil.resize((size, size), Image.BICUBIC, box=(margin, margin, size - margin, size - margin))
        blur = pil.filter(ImageFilter.GaussianBlur(1))
        rotate = pil.rotate(5, resample=Image.BICUBIC, fillcolor=None, expand=False)
        rotate = _fill_corners(np.asarray(rotate), image, 5)
        return [np.asarray(zoom), np.asarray(blur), rotate]

    def score(self, images: dict[int, np.ndarray], noise: np.ndarray, natural: np.ndarray) -> dict[int, dict]:
        """Per filter: target, noise, converged, strength, retention."""
        filters = sorted(images)
        stack = np.stack([images[f] for f in filters])
        target = self.targets(stack)[np.arange(len(filters)), filters]
        variants = np.stack([v for f in filters for v in self.perturbed(images[f])])
        varied = self.targets(variants).reshape(len(filters), 3, -1)
        out = {}
        for i, f in enumerate(filters):
            worst = varied[i, :, f].min()
            out[f] = {"target": float(target[i]), "noise": float(noise[f]),
                      "converged": bool(target[i] > 0 and target[i] >= 2 * noise[f]),
                      "strength": float(target[i] / max(natural[f], 1e-9)),
                      "retention": float(worst / target[i]) if target[i] > 0 else 0.0,
                      "retained": [round(float(v / target[i]), 3) if target[i] > 0 else 0.0 for v in varied[i, :, f]]}
        return out


def _fill_corners(rotated: np.ndarray, original: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation leaves black corners; fill them with the image rotated with reflected borders instead."""
    from scipy import ndimage

    reflected = ndimage.rotate(original.astype(np.float32), degrees, axes=(1, 0), reshape=False, order=3, mode="reflect")
    mask = ndimage.rotate(np.ones(original.shape[:2], np.float32), degrees, axes=(1, 0), reshape=False, order=1) > 0.99
    return np.where(mask[..., None], rotated, np.clip(np.round(reflected), 0, 255).astype(np.uint8))


def natural_crops(size: int) -> np.ndarray:
    """[N, size, size, 3] uint8 crops of skimage's photos (offline), each photo scaled so its short side is
    size and 2 x size, cropped on a grid of stride size/2."""
    import skimage.data
    from PIL import Image

    crops = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = photo[0] if isinstance(photo, tuple) else photo
        photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]
        for short in (size, 2 * size):
            h, w = photo.shape[:2]
            factor = short / min(h, w)
            scaled = np.asarray(Image.fromarray(photo).resize((round(w * factor), round(h * factor)), Image.BICUBIC))
            step = size // 2
            for y in range(0, scaled.shape[0] - size + 1, step):
                for x in range(0, scaled.shape[1] - size + 1, step):
                    crops.append(scaled[y:y + size, x:x + size])
    return np.stack(crops)


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
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - began)
    return min(times) / batch


# --- the tools ------------------------------------------------------------------------------------

def run_filtervis(layer, size, filters, seed, out, extra=()) -> tuple[float, dict]:
    """filtervis in a subprocess; returns (seconds, {filter: uint8 image}) and the manifest."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "filtervis", "run", "--weights", "hed", "--layer", layer,
               "--filters", filters, "--seed", str(seed), "--size", str(size), "--out", str(out), "--quiet", *extra]
    began = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    folder = Path(out) / layer
    manifest = json.loads((folder / "manifest.json").read_text())
    return seconds, _read_pngs(folder, [f["index"] for f in manifest["filters"]]), manifest


def _read_pngs(folder: Path, filters) -> dict[int, np.ndarray]:
    from PIL import Image

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
    mean = tf.constant(models.CAFFE_MEAN_BGR, tf.float32)
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


def summarize(name, scores, seconds, bare, steps="") -> dict:
    values = list(scores.values())
    row = {"tool": name, "converged": f"{sum(v['converged'] for v in values)}/{len(values)}",
           "strength": float(np.median([v["strength"] for v in values])),
           "retention": float(np.median([v["retention"] for v in values])),
           "cost": seconds / len(values) / bare, "seconds_per_filter": seconds / len(values), "steps": steps}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="block5_conv3")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--filters", default="random:16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tools", default="filtervis,before,tf-keras-vis")
    parser.add_argument("--keep", default=None, help="Folder to keep the PNGs in (default: a temporary one).")
    parser.add_argument("--json", default=None, help="Also write the per-filter scores here.")
    args = parser.parse_args(argv)

    from filtervis import config, models

    count = models.check_visualizable(models.load("vgg16", "hed", size=args.size).model, args.layer)
    filters = config.parse_filters(args.filters).resolve(count, args.seed, args.layer)
    work = Path(args.keep or tempfile.mkdtemp(prefix="filtervis-quality-"))
    scorer = Scorer(args.layer, args.size)
    noise, natural = scorer.noise_targets(), scorer.natural_best()
    bare = [bare_step_seconds(args.layer, args.size, len(filters))]
    rows, detail = [], {}
    tools = args.tools.split(",")
    for tool in tools:
        if tool == "filtervis":
            seconds, images, manifest = run_filtervis(args.layer, args.size, args.filters, args.seed, work / "filtervis")
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
        bare.append(bare_step_seconds(args.layer, args.size, len(filters)))
        scores = scorer.score(images, noise, natural)
        detail[tool] = scores
        rows.append((tool, scores, seconds, steps))
    bare_s = float(np.median(bare))
    table = [summarize(tool, scores, seconds, bare_s, steps) for tool, scores, seconds, steps in rows]
    print(f"VGG16 --weights hed, {args.layer}, {args.size} px, {len(filters)} filters ({args.filters}, seed {args.seed}); "
          f"bare forward+input-gradient pass {bare_s * 1000:.1f} ms per filter-step")
    print("| tool | converged | median strength | median retention | cost (bare steps per filter) | steps per filter |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['tool']} | {row['converged']} | {row['strength']:.2f} | {row['retention']:.2f} | "
              f"{row['cost']:.0f} | {row['steps']:.0f} |")
    if "tf-keras-vis" in tools and "filtervis" in tools:
        ours = next(r for r in table if r["tool"] == "filtervis")
        theirs = next(r for r in table if r["tool"] == "tf-keras-vis")
        print(f"filtervis / tf-keras-vis: strength {ours['strength'] / max(theirs['strength'], 1e-9):.1f}x, "
              f"cost {ours['cost'] / theirs['cost']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": table, "filters": {t: {str(k): v for k, v in d.items()}
                                                                          for t, d in detail.items()}}, indent=1))


if __name__ == "__main__":
    main()
