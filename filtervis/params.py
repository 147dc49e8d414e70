"""How the optimized image is parameterized. A parameterization is built for one image shape
(height, width, channels) and says what shape its parameters have (`shape`), how to start (`init`),
how to turn parameters into images in [0, 1] (`to_image`, batched, inside the tf.function), how to
start from a given image (`from_image`, with the picture's random stream for whatever the image leaves
undetermined) and how to keep parameters valid after each update (`project`).

Images are NHWC with 1 (grey), 3 (RGB) or 4 (RGB plus a 4th channel, such as alpha) channels, and
need not be square.

`Pixels` is the image itself. `Fourier` is lucid's parameterization (Olah et al., "Feature
Visualization", Distill 2017): a spectrum scaled by 1/frequency^decay, inverse-FFT'd, its colours
mixed by the square root of ImageNet's colour correlation and squashed into [0, 1] by a sigmoid, so
that equal steps in parameter space are equal steps in a whitened image space. Only RGB is colour:
a grey image's channel and a 4th channel are not mixed.

`Maco` is MACO (Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization", NeurIPS 2023): the amplitude of every Fourier coefficient is held at that of
natural photos (NATURAL_SPECTRUM) and only the phases are optimized, so a picture keeps a natural
image's contrast at every frequency and can only rearrange it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import exact

DEFAULT_INIT_AMPLITUDE = 0.1  # pixel start: mid-grey +- this much
FOURIER_INIT_STD = 0.01  # fft start: spectrum parameters ~ N(0, this), a near-grey image
FOURIER_GAIN = 3.0  # image contrast (sigmoid units) per unit of parameter std: 2x lucid's at 128 px (see README: Scores)
SQUASH_EPSILON = 1e-3  # from_image clips to [eps, 1 - eps] so the sigmoid can be inverted
SUPPORTED_CHANNELS = (1, 3, 4)  # grey, RGB, RGB + a 4th channel (alpha); RGB is the colour-mixed part
COLOR_CHANNELS = 3  # the first this many channels of a 3- or 4-channel image are RGB

# Square root of the ImageNet RGB colour correlation (from its SVD), as published by Olah et al. 2017.
# Columns are colour directions: luminance, red-blue, green-magenta.
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02],
                                   [0.27, 0.00, -0.05],
                                   [0.27, -0.09, 0.03]], np.float32)
COLOR_MIX = COLOR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))

# Frequency bin edges (cycles per pixel) of NATURAL_SPECTRUM: half-octave steps from 1/256 past the
# corner frequency sqrt(1/2).
SPECTRUM_BINS = tuple(float(2.0 ** (k / 2) / 256) for k in range(17))


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """`image_shape` as a (height, width, channels) tuple of ints; ValueError unless it is one, with
    channels in SUPPORTED_CHANNELS."""
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in shape):
        raise ValueError(f"image shape must be (height, width, channels), positive ints, but was {image_shape!r}")
    if shape[2] not in SUPPORTED_CHANNELS:
        raise ValueError(f"images must have {', '.join(map(str, SUPPORTED_CHANNELS))} channels "
                         f"(grey, RGB, RGB + alpha), but had {shape[2]}")
    return tuple(int(n) for n in shape)


def _check_image(image: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    if tuple(image.shape) != image_shape:
        raise ValueError(f"start image must have shape {image_shape} (height, width, channels), "
                         f"but had {tuple(image.shape)}")
    return image


class Pixels:
    """The image itself, kept in [0, 1] by clipping after each update. Parameters: [H, W, C], the
    image shape."""

    name = "pixel"

    def __init__(self, image_shape):
        self.image_shape = check_image_shape(image_shape)
        self.shape = self.image_shape

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Low-amplitude noise around mid-grey in every channel, [H, W, C] float32."""
        noise = rng.uniform(-DEFAULT_INIT_AMPLITUDE, DEFAULT_INIT_AMPLITUDE, self.shape)
        return (0.5 + noise).astype(np.float32)

    def from_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Parameters reproducing `image` ([H, W, C] in [0, 1]; values outside are clipped). `rng` is
        unused: the image determines every parameter."""
        return np.clip(_check_image(image, self.image_shape), 0.0, 1.0).astype(np.float32)

    def to_image(self, params):
        """[B, H, W, C] parameters -> the same [B, H, W, C] images."""
        return params

    def project(self, params):
        return tf.clip_by_value(params, 0.0, 1.0)


def frequency_scale(height: int, width: int, decay: float) -> np.ndarray:
    """[height, width // 2 + 1] gain of each rfft2 coefficient, proportional to
    1 / max(f, 1/max(height, width))^decay (f in cycles per pixel; the floor is the lowest frequency
    the longer side holds, and is the DC's gain) and normalized so that coefficients of unit std give
    pixels of about unit std whatever the decay and shape (the root mean square gain is
    sqrt(height * width), undoing irfft2's 1/(height * width); about, as the self-conjugate
    coefficients, DC among them, keep only their real part)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    gain = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(height, width)) ** decay
    # (sqrt of a square is exact, so a square image's gains are those of size * size bit for bit)
    return (gain / np.sqrt(np.mean(gain * gain)) * np.sqrt(height * width)).astype(np.float32)


class Fourier:
    """A decorrelated, 1/f-scaled spectrum. Parameters: [2, C, H, W // 2 + 1] (the real parts, then the
    imaginary parts, of each channel's rfft2 coefficients: each a contiguous block, so that splitting
    them and stacking their gradient are plain copies). For RGB the channels are the COLOR_MIX directions; a grey
    image's one channel and a 4th channel are themselves (the luminance direction has unit norm too)."""

    name = "fft"

    def __init__(self, image_shape, decay: float = 1.0):
        if decay < 0:
            raise ValueError(f"decay must be 0 or more, but was {decay}")
        self.image_shape = check_image_shape(image_shape)
        self.decay = decay
        height, width, channels = self.image_shape
        self.shape = (2, channels, height, width // 2 + 1)
        self._scale = frequency_scale(height, width, decay) * FOURIER_GAIN

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Small Gaussian spectrum: a near-grey image with faint low-frequency colour, [2, C, H, W//2+1]
        (drawn as [C, H, W//2+1, 2], each coefficient's real and imaginary part in turn)."""
        drawn = rng.normal(0.0, FOURIER_INIT_STD, (*self.shape[1:], 2)).astype(np.float32)
        return np.ascontiguousarray(np.moveaxis(drawn, -1, 0))

    def to_image(self, params):
        """[B, 2, C, H, W//2+1] parameters -> [B, H, W, C] images in (0, 1)."""
        return squash(self.logits(params))

    def logits(self, params):
        """[B, 2, C, H, W//2+1] parameters -> [B, H, W, C]: the images' values before the sigmoid."""
        height, width, channels = self.image_shape
        scale = tf.constant(self._scale)
        real, imaginary = tf.unstack(params, axis=1)  # (its gradient stacks; a slice's scatters into zeros)
        spectrum = tf.complex(real * scale, imaginary * scale)
        planes = tf.signal.irfft2d(spectrum, fft_length=[height, width])  # [B, C, H, W]
        return mix_colours(planes, channels)

    def from_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Parameters whose `to_image` is `image` ([H, W, C] in [0, 1]), up to 8-bit rounding (and
        values within SQUASH_EPSILON of 0 or 1 move to it). `rng` is unused: the image determines every
        parameter."""
        _check_image(image, self.image_shape)
        channels = self.image_shape[2]
        clipped = np.clip(image.astype(np.float64), SQUASH_EPSILON, 1.0 - SQUASH_EPSILON)
        logits = np.log(clipped / (1.0 - clipped))
        unmix = np.linalg.inv(COLOR_MIX.astype(np.float64)).T
        if channels == COLOR_CHANNELS:
            decorrelated = logits @ unmix
        elif channels > COLOR_CHANNELS:
            decorrelated = np.concatenate([logits[..., :COLOR_CHANNELS] @ unmix, logits[..., COLOR_CHANNELS:]],
                                          axis=-1)
        else:
            decorrelated = logits
        spectrum = np.fft.rfft2(np.transpose(decorrelated, (2, 0, 1))) / self._scale
        return np.stack([spectrum.real, spectrum.imag]).astype(np.float32)

    def project(self, params):
        return params


def squash(logits):
    """Image values in (0, 1) from their logits: the sigmoid of a sigmoid parameterization (per image,
    see exact.py)."""
    return exact.per_image(tf.sigmoid, logits)


def mix_colours(planes, channels: int):
    """[B, C, H, W] planes in the decorrelated colour directions -> [B, H, W, C] image values: the RGB
    planes mixed by COLOR_MIX, a grey plane and a 4th one as they are.

    The mix is element-wise products summed over the input colour, not a matmul: a matmul is one
    product over all B*H*W pixels whose leftover rows can skip the fused multiply-add (AVX2), so an
    image's last pixels would depend on the batch. (Not a hand-written sum of nine products either:
    TensorFlow's arithmetic optimizer rewrote its gradient differently per chain.)"""
    if channels >= COLOR_CHANNELS:
        weights = tf.constant(COLOR_MIX[None, :, :, None, None])  # [1, 3 (out), 3 (in), 1, 1]
        rgb = tf.reduce_sum(planes[:, None, :COLOR_CHANNELS] * weights, axis=2)  # [B, 3, H, W]
        planes = tf.concat([rgb, planes[:, COLOR_CHANNELS:]], axis=1) if channels > COLOR_CHANNELS else rgb
    return tf.transpose(planes, [0, 2, 3, 1])


def _unmix(image: np.ndarray) -> np.ndarray:
    """[H, W, C] values -> [H, W, C] in the decorrelated colour directions (the inverse of mix_colours)."""
    channels = image.shape[-1]
    if channels < COLOR_CHANNELS:
        return image
    unmix = np.linalg.inv(COLOR_MIX.astype(np.float64)).T
    rgb = image[..., :COLOR_CHANNELS] @ unmix
    return np.concatenate([rgb, image[..., COLOR_CHANNELS:]], axis=-1) if channels > COLOR_CHANNELS else rgb


# The amplitude spectrum of natural photos that Maco holds fixed: per frequency bin (SPECTRUM_BINS), the
# root mean square of |rfft2| / sqrt(height * width) of crops of scikit-image's bundled photos, pixels in
# [0, 1] centred on their mean (benchmarks/natural_spectrum.py computes and prints it). `colour`: the
# three COLOR_MIX directions (luminance, red-blue, green-magenta); `grey`: the photos' luminance. `*_DC`:
# the spread of the crops' mean in the same units (how far a picture's mean may move from mid-grey).
NATURAL_SPECTRUM = {
    "colour": ((16.60746, 9.79972, 7.69355, 4.66395, 3.52899, 2.13447, 1.49885, 0.96644, 0.64768, 0.41555,
                0.2828, 0.17421, 0.10264, 0.05489, 0.02919, 0.01697),
               (23.91822, 13.53144, 10.03701, 5.91327, 4.05117, 2.3703, 1.55647, 0.89642, 0.57091, 0.33238,
                0.21226, 0.12714, 0.07805, 0.04478, 0.01877, 0.00901),
               (18.62658, 11.36312, 7.66506, 4.6372, 3.11816, 1.86594, 1.20481, 0.71774, 0.46124, 0.27574,
                0.18015, 0.11071, 0.06996, 0.0403, 0.02062, 0.0124)),
    "grey": ((9.6593, 5.71586, 4.46266, 2.71362, 2.04236, 1.23832, 0.86705, 0.55879, 0.37451, 0.24015,
              0.16344, 0.10065, 0.0593, 0.03173, 0.01688, 0.00977),),
}
NATURAL_DC = {"colour": (0.2987, 0.4927, 0.321), "grey": (0.1749,)}
MACO_SLOPE = 4.0  # image = sigmoid(MACO_SLOPE * values): about the values themselves + 0.5 near mid-grey
MACO_PHASE_GAIN = 1.0  # radians of phase per unit of parameter
MACO_EMPTY_SHARE = 1e-3  # from_image: a coefficient below this share of its natural amplitude has no phase
# of its own (exact zeros, such as the odd frequencies of a 2x2 repeated tile, and float rounding of them;
# 8-bit rounding of a picture leaves about a hundred times more at the highest frequencies)


def natural_amplitude(height: int, width: int, channels: int) -> np.ndarray:
    """[channels, height, width // 2 + 1] the amplitude of each rfft2 coefficient of a natural
    `height` x `width` image (pixels in [0, 1]) in the decorrelated colour directions: NATURAL_SPECTRUM
    interpolated log-log between bin centres (extrapolated along the end bins' slope), times
    sqrt(height * width) (irfft2's scale); the DC coefficient gets NATURAL_DC times height * width.
    RGB channels take `colour`, a grey channel and a 4th channel `grey`."""
    check_image_shape((height, width, channels))
    edges = np.asarray(SPECTRUM_BINS)
    centres = np.log(np.sqrt(edges[:-1] * edges[1:]))
    f = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None, :] ** 2)
    logf = np.log(np.maximum(f, 1e-12))
    rows = []
    kinds = ["colour"] * COLOR_CHANNELS + ["grey"] * (channels - COLOR_CHANNELS) if channels >= COLOR_CHANNELS \
        else ["grey"] * channels
    for c, kind in enumerate(kinds):
        index = c if kind == "colour" else 0
        table = np.log(np.asarray(NATURAL_SPECTRUM[kind][index]))
        amplitude = np.interp(logf, centres, table)
        low, high = logf < centres[0], logf > centres[-1]
        slope_low = (table[1] - table[0]) / (centres[1] - centres[0])
        slope_high = (table[-1] - table[-2]) / (centres[-1] - centres[-2])
        amplitude = np.where(low, table[0] + slope_low * (logf - centres[0]), amplitude)
        amplitude = np.where(high, table[-1] + slope_high * (logf - centres[-1]), amplitude)
        plane = np.exp(amplitude) * np.sqrt(height * width)
        plane[0, 0] = NATURAL_DC[kind][index] * height * width
        rows.append(plane)
    return np.stack(rows).astype(np.float32)


class Maco:
    """MACO: the phases of a spectrum whose amplitudes are those of natural images (natural_amplitude).
    Parameters: [C, H, W // 2 + 1], each coefficient's phase (radians / MACO_PHASE_GAIN) in the
    decorrelated colour directions (as Fourier's). The image is sigmoid(MACO_SLOPE * colour mix of the
    inverse FFT): a natural image's contrast, softly kept inside [0, 1]."""

    name = "maco"

    def __init__(self, image_shape):
        self.image_shape = check_image_shape(image_shape)
        height, width, channels = self.image_shape
        self.shape = (channels, height, width // 2 + 1)
        self._amplitude = natural_amplitude(height, width, channels)

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform random phases: a random natural-looking texture, [C, H, W//2+1]."""
        return (rng.uniform(-np.pi, np.pi, self.shape) / MACO_PHASE_GAIN).astype(np.float32)

    def to_image(self, params):
        """[B, C, H, W//2+1] phases -> [B, H, W, C] images in (0, 1)."""
        return squash(self.logits(params))

    def logits(self, params):
        """[B, C, H, W//2+1] phases -> [B, H, W, C]: the images' values before the sigmoid."""
        height, width, channels = self.image_shape
        amplitude = tf.constant(self._amplitude)
        phase = params * MACO_PHASE_GAIN
        # (cos and sin per image: see exact.py)
        spectrum = tf.complex(amplitude * exact.per_image(tf.cos, phase), amplitude * exact.per_image(tf.sin, phase))
        planes = tf.signal.irfft2d(spectrum, fft_length=[height, width])  # [B, C, H, W]
        return MACO_SLOPE * mix_colours(planes, channels)

    def from_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The phases of `image` ([H, W, C] in [0, 1]): its arrangement, under the natural amplitudes
        (so `to_image` gives an image with `image`'s structure, not its exact pixels), [C, H, W//2+1].

        A coefficient the image lacks (below MACO_EMPTY_SHARE of its natural amplitude: a flat image's
        every one but the mean, 3 in 4 of a 2x2 repeated tile's) has no phase to keep, yet `to_image`
        gives it the full natural amplitude: it takes a uniform random phase from `rng`, as `init`
        would. (The angle of a zero is 0: the same phase in every picture, so together the empty
        coefficients add one fixed pattern to all of them, peaked at the corners.)"""
        _check_image(image, self.image_shape)
        clipped = np.clip(image.astype(np.float64), SQUASH_EPSILON, 1.0 - SQUASH_EPSILON)
        values = _unmix(np.log(clipped / (1.0 - clipped)) / MACO_SLOPE)
        spectrum = np.fft.rfft2(np.transpose(values, (2, 0, 1)))
        empty = np.abs(spectrum) < MACO_EMPTY_SHARE * self._amplitude
        phases = np.where(empty, self.init(rng) * MACO_PHASE_GAIN, np.angle(spectrum))
        return (phases / MACO_PHASE_GAIN).astype(np.float32)

    def project(self, params):
        return params


NAMES = ("pixel", "fft", "maco")  # the parameterizations `build` knows; `resolve` also takes `auto`
# Parameterizations that never start from a repeated tile (tiles.py): a 2x2 repeated tile has no energy at 3 in 4
# of the output size's coefficients, which maco holds at the natural amplitude, so under maco the tile's
# pattern keeps a quarter of the picture's energy and random phases fill the rest (VGG16 hed block5_conv3,
# 128 px, 8 filters: 64 steps at the output size reached 1.15-2.3x, median 1.25x, the activation of 128
# steps through the tile, at about the same compute).
UNTILED = ("maco",)


def build(name: str, image_shape, decay: float):
    """The parameterization called `name` (`pixel`, `fft` or `maco`) for images of `image_shape`
    (height, width, channels); `decay` is fft's."""
    if name == "pixel":
        return Pixels(image_shape)
    if name == "fft":
        return Fourier(image_shape, decay)
    if name == "maco":
        return Maco(image_shape)
    raise ValueError(f"unknown parameterization {name!r}; use one of {', '.join(NAMES)}")


AUTO_FFT_DOWNSAMPLING = 4  # auto: fft once the layer's map is this many times smaller than the image


def downsampling(output_shape, image_shape) -> float:
    """How many times smaller than the image (height, width, channels) a layer's output is.

    `output_shape` leaves out the batch axis: (h, w, c) for a map, whose downsampling is the larger
    of height / h and width / w (the axis that lost more of the fine detail), or (units,) for a
    Dense output, which is infinitely downsampled (so is a map of unknown size).
    """
    shape = tuple(output_shape)
    if len(shape) == 4 and shape[0] is None:
        raise ValueError(f"output shape must leave out the batch axis, (h, w, c), but was {shape}")
    if len(shape) != 3 or not shape[0] or not shape[1]:
        return float("inf")
    return max(image_shape[0] / shape[0], image_shape[1] / shape[1])


def resolve(name: str, decay: float, output_shape, image_shape):
    """The parameterization for `--param name` with the layer's `output_shape` (no batch axis) and
    images of `image_shape` (height, width, channels).

    `auto` picks pixels for early layers (output map less than AUTO_FFT_DOWNSAMPLING times smaller than
    the image, see `downsampling`: their filters want the fine detail a 1/f spectrum starves) and fft
    for deeper ones and Dense outputs.
    """
    if name == "auto":
        name = "fft" if downsampling(output_shape, image_shape) >= AUTO_FFT_DOWNSAMPLING else "pixel"
    return build(name, image_shape, decay)
