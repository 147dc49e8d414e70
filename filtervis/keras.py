"""Watch filters form during training: a Keras callback that renders them every few epochs.

    model.fit(x, y, epochs=10, callbacks=[
        filtervis.keras.FilterCallback("conv2", "0-7", out="filters", every=2, steps=64, tensorboard="logs")])

After every `every`-th epoch the callback renders the filters on the model as it is (see
filtervis.render; `**options` are render's) and writes that epoch's palette to
OUT/<layer>/epoch_NNNN.png, and with a TensorBoard log folder an image summary per layer
(`filtervis/<layer>`, step = the epoch). Rendering reads the model and changes nothing in it: not
its weights, not its training state, not the random streams training draws from (no global seed is
set, every random number filtervis draws comes from its own seeded generators, and the layers are
called with training=False).
"""

from __future__ import annotations

from pathlib import Path

import keras

from . import api, files
from .errors import SpecError


def epoch_filename(epoch: int) -> str:
    """The palette of (1-based) epoch `epoch`."""
    return f"epoch_{epoch:04d}.png"


class FilterCallback(keras.callbacks.Callback):
    """Render `filters` of `layer` every `every` epochs during `fit` (see the module doc). `layer` is a
    layer name, a shell-style pattern ("conv*"), `all`, or a list of them."""

    def __init__(self, layer, filters=None, out: str | Path = "filtervis-epochs", every: int = 1,
                 tensorboard: str | Path | None = None, **options):
        super().__init__()
        layers = (layer,) if isinstance(layer, str) else tuple(layer)
        if not layers or not all(isinstance(name, str) and name for name in layers):
            raise SpecError(f"FilterCallback: layer must be a layer name or a list of them, but was {layer!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise SpecError(f"FilterCallback: every must be a whole number of epochs, 1 or more, but was {every!r}")
        api.spec_of("model", layers[0], filters, dict(options))  # the options' own checks, before training
        if tensorboard is not None:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise SpecError("FilterCallback(tensorboard=...) needs the tensorboard package; "
                                "pip install tensorboard (or filtervis[tensorboard]), or leave tensorboard out")
        files.check_writable(out)
        self.layers, self.filters, self.out, self.every = layers, filters, Path(out), every
        self.tensorboard, self.options = tensorboard, dict(options)
        self.written: list[Path] = []  # every palette written, in order
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every:
            return
        for request in self.layers:
            result = api.render(self.model, request, self.filters, **self.options)
            for layer, one in (result.items() if isinstance(result, dict) else [(request, result)]):
                palette = one.palette_array()
                path = self.out / files.layer_dirname(layer) / epoch_filename(done)
                files.write_png(path, palette)
                self.written.append(path)
                if self.tensorboard is not None:
                    self._summary(layer, palette, done)

    def _summary(self, layer: str, palette, step: int) -> None:
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.tensorboard))
        image = tf.constant(palette[None], tf.uint8)
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        with self._writer.as_default():
            tf.summary.image(f"filtervis/{layer}", image, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
