"""The parameterizations: exact inverses, the spectrum gains, the depth-aware choice, for grey, RGB
and RGBA images of any height and width."""

import numpy as np
import tensorflow as tf
import pytest

from conftest import run_renderer
from filtervis.options import RunSpec
from filtervis.params import DEFAULT_INIT_AMPLITUDE, Fourier, Pixels
from filtervis import params

WIDE = (12, 20)  # a non-square image: height, width


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_pixels_init_is_seeded_low_amplitude_noise_around_grey(channels):
    pixels = Pixels((5, 7, channels))
    a = pixels.init(np.random.default_rng(1))
    b = pixels.init(np.random.default_rng(1))
    assert pixels.shape == pixels.image_shape == (5, 7, channels)
    assert a.shape == (5, 7, channels) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - 0.5).max() <= DEFAULT_INIT_AMPLITUDE
    assert all(a[..., c].std() > 0 for c in range(channels))  # every channel is noisy grey


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_pixels_round_trip_and_projection(channels):
    pixels = Pixels((2, 3, channels))
    image = np.linspace(-0.5, 1.5, 6 * channels, dtype=np.float32).reshape(2, 3, channels)
    start = pixels.from_image(image, np.random.default_rng(0))
    assert start.shape == (2, 3, channels) and start.min() == 0.0 and start.max() == 1.0
    np.testing.assert_array_equal(pixels.to_image(start[None]), start[None])
    np.testing.assert_allclose(pixels.project(tf.constant(image)), np.clip(image, 0, 1))


def test_frequency_scale_is_flat_without_decay_and_falls_with_it():
    flat = params.frequency_scale(8, 8, 0.0)
    assert flat.shape == (8, 5)
    np.testing.assert_allclose(flat, 8.0, rtol=1e-6)
    falling = params.frequency_scale(8, 8, 1.0)
    assert np.sqrt(np.mean(falling ** 2)) == pytest.approx(8.0, rel=1e-5)  # same energy as decay 0
    assert falling[0, 0] == falling.max() and falling[0, 1] == falling[0, 0]  # DC gets the lowest frequency's gain
    assert falling[0, 4] < falling[0, 2] < falling[0, 1]  # higher frequency, lower gain


def test_frequency_scale_of_a_wide_image():
    flat = params.frequency_scale(6, 10, 0.0)
    assert flat.shape == (6, 6)
    np.testing.assert_allclose(flat, np.sqrt(60.0), rtol=1e-6)  # undoes irfft2's 1 / (6 * 10)
    falling = params.frequency_scale(6, 10, 1.0)
    assert np.sqrt(np.mean(falling ** 2)) == pytest.approx(np.sqrt(60.0), rel=1e-5)
    assert falling[0, 0] == falling[0, 1] == falling.max()  # DC floor: the longer side's lowest frequency, 1/10
    assert falling[1, 0] < falling[0, 1]  # 1/6 cycle per pixel down the short side is a higher frequency
    assert falling[1, 0] == pytest.approx(falling[0, 1] * 6 / 10, rel=1e-5)  # gain ~ 1/f


@pytest.mark.parametrize("height, width", [(16, 16), WIDE, (20, 12), (9, 7)])
def test_frequency_scale_gives_pixels_of_about_unit_std(height, width):
    """Spectrum coefficients of unit mean square (real and imaginary parts of std 1/sqrt(2)) make
    pixels of unit std without decay, whatever the shape; with decay a little less, as the
    self-conjugate coefficients (DC, the Nyquist line), which decay weights most, keep only their
    real part (so it is for square images too)."""
    rng = np.random.default_rng(0)
    coefficients = rng.normal(0, np.sqrt(0.5), (500, height, width // 2 + 1, 2))
    spectrum = coefficients[..., 0] + 1j * coefficients[..., 1]
    flat = np.fft.irfft2(spectrum * params.frequency_scale(height, width, 0.0), s=(height, width))
    assert flat.std() == pytest.approx(1.0, abs=0.05)
    falling = np.fft.irfft2(spectrum * params.frequency_scale(height, width, 1.0), s=(height, width))
    assert 0.75 < falling.std() < 1.0


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_fourier_from_image_inverts_to_image(channels, decay):
    fourier = Fourier((*WIDE, channels), decay)
    image = np.random.default_rng(0).uniform(0.05, 0.95, (*WIDE, channels)).astype(np.float32)
    spectrum = fourier.from_image(image, np.random.default_rng(0))
    assert spectrum.shape == fourier.shape == (2, channels, 12, 11)
    back = fourier.to_image(tf.constant(spectrum[None])).numpy()
    assert back.shape == (1, *WIDE, channels)
    np.testing.assert_allclose(back[0], image, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_fourier_inverts_an_odd_width(channels):
    fourier = Fourier((8, 7, channels))
    image = np.random.default_rng(3).uniform(0.05, 0.95, (8, 7, channels)).astype(np.float32)
    assert fourier.shape == (2, channels, 8, 4)
    start = fourier.from_image(image, np.random.default_rng(0))
    np.testing.assert_allclose(fourier.to_image(tf.constant(start[None])).numpy()[0], image, atol=1e-4)


def test_only_rgb_is_colour_mixed():
    """RGBA = the RGB parameterization of the first 3 channels + the grey one of the 4th."""
    spectrum = tf.constant(np.random.default_rng(2).normal(0, 0.3, (2, 2, 4, 12, 11)).astype(np.float32))
    rgba = Fourier((*WIDE, 4)).to_image(spectrum).numpy()
    np.testing.assert_allclose(rgba[..., :3], Fourier((*WIDE, 3)).to_image(spectrum[:, :, :3]).numpy(), atol=1e-6)
    np.testing.assert_allclose(rgba[..., 3:], Fourier((*WIDE, 1)).to_image(spectrum[:, :, 3:]).numpy(), atol=1e-6)
    alpha_only = np.zeros((1, 2, 4, 12, 11), np.float32)
    alpha_only[0, 0, 3, 0, 0] = 0.5  # a DC offset (its real part) in the 4th channel alone
    out = Fourier((*WIDE, 4)).to_image(tf.constant(alpha_only)).numpy()[0]
    np.testing.assert_array_equal(out[..., :3], 0.5)  # the colours do not see it
    assert np.all(out[..., 3] > 0.5)
    grey = np.zeros((1, 2, 1, 12, 11), np.float32)
    grey[0, 0, 0, 0, 0] = 0.5
    np.testing.assert_allclose(Fourier((*WIDE, 1)).to_image(tf.constant(grey)).numpy()[0], out[..., 3:], atol=1e-7)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_fourier_starts_near_grey_and_stays_in_range(channels):
    fourier = Fourier((*WIDE, channels))
    start = fourier.init(np.random.default_rng(1))
    assert start.shape == fourier.shape and start.dtype == np.float32
    np.testing.assert_array_equal(start, fourier.init(np.random.default_rng(1)))
    image = fourier.to_image(tf.constant(start[None])).numpy()
    assert image.shape == (1, *WIDE, channels)
    assert np.abs(image - 0.5).max() < 0.05
    loud = fourier.to_image(tf.constant(np.full((1, *fourier.shape), 50.0, np.float32))).numpy()
    assert loud.min() >= 0.0 and loud.max() <= 1.0


@pytest.mark.parametrize("image_shape", [(7, 5, 1), (5, 7, 4), (5, 9, 3)])
def test_fourier_image_does_not_depend_on_its_batch(image_shape):
    """Odd shapes whose value counts are no multiple of exact.WIDEST_VECTOR: each image comes out bit
    for bit the same alone as in a batch (see exact.py)."""
    fourier = Fourier(image_shape)
    batch = np.stack([fourier.init(np.random.default_rng(k)) * 100 for k in range(3)])
    together = tf.function(fourier.to_image)(tf.constant(batch)).numpy()
    for k in range(3):
        np.testing.assert_array_equal(tf.function(fourier.to_image)(tf.constant(batch[k:k + 1])).numpy()[0],
                                      together[k])


def test_start_images_must_have_the_image_shape():
    image = np.full((20, 12, 3), 0.5, np.float32)  # height and width swapped
    for param in (Pixels((*WIDE, 3)), Fourier((*WIDE, 3))):
        with pytest.raises(ValueError, match=r"\(12, 20, 3\)"):
            param.from_image(image, np.random.default_rng(0))


def _logits(images):
    images = np.asarray(images, np.float64)
    return np.log(images / (1.0 - images))


def test_colour_mixing_gives_white_parameters_the_colour_correlation_of_natural_images():
    """Independent spectrum parameters (decorrelated colour directions, decay 0: white noise) come out as
    RGB whose channels correlate as ImageNet's do: R-G and G-B about 0.91, R-B about 0.79 (before the
    sigmoid). The red-blue and green-magenta directions alone are colour-opponent and far weaker than
    luminance."""
    fourier = Fourier((32, 32, 3), 0.0)
    spectrum = np.random.default_rng(0).normal(0.0, 0.05, (4, *fourier.shape)).astype(np.float32)
    rgb = _logits(fourier.to_image(tf.constant(spectrum)).numpy()).reshape(-1, 3)
    np.testing.assert_allclose(np.corrcoef(rgb.T), [[1.0, 0.91, 0.79], [0.91, 1.0, 0.91], [0.79, 0.91, 1.0]],
                               atol=0.03)
    spreads = {}
    for direction in range(3):
        alone = np.zeros_like(spectrum)
        alone[:, :, direction] = spectrum[:, :, direction]
        pixels = _logits(fourier.to_image(tf.constant(alone)).numpy()).reshape(-1, 3)
        spreads[direction] = np.sqrt(np.mean(np.sum(pixels ** 2, axis=1)))
        against = lambda a, b: np.corrcoef(pixels[:, a], pixels[:, b])[0, 1] < -0.99  # noqa: E731
        if direction == 1:
            assert against(0, 2) and np.abs(pixels[:, 1]).max() < 1e-4  # red against blue; green stays
        if direction == 2:
            assert against(1, 0) and against(1, 2)  # green against red and blue (magenta)
    assert spreads[1] < 0.35 * spreads[0] and spreads[2] < 0.35 * spreads[0]


@pytest.mark.parametrize("channels", [3, 4])
def test_luminance_moves_an_rgb_image_as_far_as_a_grey_one(channels):
    """The luminance direction has unit norm, as a grey image's one channel: the same parameters in it
    move an RGB pixel's three values (before the sigmoid) together, by a vector as long as the grey
    pixel's move, so a parameter step is the same contrast in colour and in grey. Mixing then unmixing
    gives the planes back."""
    spectrum = np.random.default_rng(1).normal(0.0, 0.1, (2, 2, 1, *WIDE[:1], WIDE[1] // 2 + 1)).astype(np.float32)
    grey = _logits(Fourier((*WIDE, 1)).to_image(tf.constant(spectrum)).numpy())[..., 0]
    lifted = np.concatenate([spectrum, np.zeros((2, 2, channels - 1, *spectrum.shape[3:]), np.float32)], axis=2)
    colour = _logits(Fourier((*WIDE, channels)).to_image(tf.constant(lifted)).numpy())
    np.testing.assert_allclose(np.linalg.norm(colour[..., :3], axis=-1), np.abs(grey), rtol=1e-3, atol=1e-5)
    for c in range(3):
        assert np.all(np.sign(colour[..., c]) == np.sign(grey))
        assert np.abs(colour[..., c]).max() < np.abs(grey).max()  # shared between R, G and B
    planes = np.random.default_rng(2).normal(0.0, 1.0, (2, channels, *WIDE)).astype(np.float32)
    mixed = params.mix_colours(tf.constant(planes), channels).numpy()
    assert mixed.shape == (2, *WIDE, channels)
    np.testing.assert_allclose(np.stack([np.transpose(params._unmix(m.astype(np.float64)), (2, 0, 1)) for m in mixed]),
                               planes, atol=1e-5)
    if channels == 4:
        np.testing.assert_array_equal(mixed[..., 3], planes[:, 3])  # the 4th channel is not mixed


@pytest.mark.parametrize("make", [Pixels, Fourier, lambda shape: params.build("fft", shape, 1.0),
                                  lambda shape: params.resolve("auto", 1.0, (4, 4, 8), shape)])
@pytest.mark.parametrize("channels", [2, 5])
def test_unsupported_channel_counts_are_rejected(make, channels):
    with pytest.raises(ValueError, match=f"1, 3, 4 channels.*but had {channels}"):
        make((16, 16, channels))


def test_image_shapes_must_be_height_width_channels():
    with pytest.raises(ValueError, match="height, width, channels"):
        Pixels((16, 16))
    with pytest.raises(ValueError, match="height, width, channels"):
        Fourier((0, 16, 3))


def test_build_rejects_unknown_names_and_negative_decay():
    with pytest.raises(ValueError, match="pixel, fft"):
        params.build("wavelet", (16, 16, 3), 1.0)
    with pytest.raises(ValueError, match="decay"):
        Fourier((16, 16, 3), -1.0)
    built = params.build("fft", (*WIDE, 4), 1.5)
    assert built.name == "fft" and built.image_shape == (*WIDE, 4) and built.decay == 1.5
    assert params.build("pixel", (*WIDE, 1), 1.0).shape == (*WIDE, 1)


def test_downsampling_of_maps_and_dense_outputs():
    assert params.downsampling((16, 16, 8), (16, 16, 3)) == 1.0
    assert params.downsampling((4, 4, 8), (16, 16, 3)) == 4.0
    assert params.downsampling((16, 8, 8), (64, 64, 3)) == 8.0  # the larger of the height and width ratios
    assert params.downsampling((12, 5, 8), (12, 20, 1)) == 4.0
    assert params.downsampling((10,), (16, 16, 3)) == float("inf")  # Dense
    assert params.downsampling((None, None, 8), (16, 16, 3)) == float("inf")  # unknown map size
    with pytest.raises(ValueError, match="batch axis"):
        params.downsampling((None, 4, 4, 8), (16, 16, 3))


def test_resolve_picks_pixels_early_and_fft_deep():
    assert params.resolve("auto", 1.0, (16, 16, 2), (16, 16, 3)).name == "pixel"
    assert params.resolve("auto", 1.0, (5, 5, 2), (16, 16, 3)).name == "pixel"  # 3.2x: not yet deep
    assert params.resolve("auto", 1.0, (4, 4, 2), (16, 16, 3)).name == "fft"
    assert params.resolve("auto", 1.0, (3,), (16, 16, 3)).name == "fft"
    assert params.resolve("pixel", 1.0, (3,), (16, 16, 3)).name == "pixel"
    assert params.resolve("fft", 1.0, (16, 16, 2), (16, 16, 3)).name == "fft"
    wide = params.resolve("auto", 2.0, (12, 5, 2), (12, 20, 4))  # 1x down, 4x across
    assert wide.name == "fft" and wide.image_shape == (12, 20, 4) and wide.decay == 2.0
    assert params.resolve("auto", 1.0, (12, 10, 2), (12, 20, 1)).image_shape == (12, 20, 1)


def test_resolve_takes_a_keras_models_output_shape_without_the_batch_axis():
    import keras

    inputs = keras.Input((16, 32, 1))
    early = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    deep = keras.layers.MaxPooling2D(4)(early)
    dense = keras.layers.Dense(3)(keras.layers.Flatten()(deep))
    choose = lambda outputs: params.resolve("auto", 1.0, keras.Model(inputs, outputs).output_shape[1:],  # noqa: E731
                                            (16, 32, 1)).name
    assert [choose(early), choose(deep), choose(dense)] == ["pixel", "fft", "fft"]


def test_renderer_optimizes_a_fourier_image_and_can_start_from_one(tiny_model):
    from filtervis import models

    settings = RunSpec(steps=16, lr=0.1, tv_weight=0.0, lp_weight=0.0, lp_norm=6.0, jitter=1, seed=0)
    renderer = run_renderer(models.cut(tiny_model, "conv2"), models.preprocess_fn("tf"), (16, 16, 3), 2, settings,
                                 Fourier((16, 16, 3)))
    assert tuple(renderer.params.shape) == (2, 2, 3, 16, 9)
    results = renderer.render([1, 4])
    assert all(r.image.shape == (16, 16, 3) and r.activation > r.noise_activation for r in results)
    start = np.full((16, 16, 3), 0.25, np.float32)
    again = renderer.render([1], starts=[start])[0]
    assert again.activation > 0 and not np.allclose(again.image, 64)  # moved away from the flat start


# --- maco: phases under a fixed natural amplitude spectrum ------------------------------------------

def _maco_planes(maco, images):
    """The decorrelated planes whose squash is `images` [B, H, W, C]: the inverse of Maco.to_image
    before the spectrum, [B, C, H, W]."""
    clipped = np.clip(images.astype(np.float64), 1e-6, 1 - 1e-6)
    values = np.log(clipped / (1 - clipped)) / params.MACO_SLOPE
    return np.stack([np.transpose(params._unmix(v), (2, 0, 1)) for v in values])


@pytest.mark.parametrize("shape", [(16, 12, 3), (9, 14, 1), (10, 10, 4)])
def test_maco_keeps_the_natural_amplitudes_whatever_the_phases(shape):
    """Two random phase sets (and one pushed far by an update) give images whose spectra have the natural
    amplitude at every coefficient off the self-conjugate columns (irfft2 keeps only part of those)."""
    maco = params.Maco(shape)
    assert maco.shape == (shape[2], shape[0], shape[1] // 2 + 1)
    phases = np.stack([maco.init(np.random.default_rng(k)) for k in range(2)] +
                      [maco.init(np.random.default_rng(2)) + 3.7])
    images = maco.to_image(tf.constant(phases)).numpy()
    assert images.shape == (3, *shape) and 0 < images.min() and images.max() < 1
    spectra = np.abs(np.fft.rfft2(_maco_planes(maco, images)))
    interior = slice(1, (shape[1] - 1) // 2 + 1 if shape[1] % 2 else shape[1] // 2)
    expected = params.natural_amplitude(*shape)[:, :, interior]
    for spectrum in spectra:
        np.testing.assert_allclose(spectrum[:, :, interior], expected, rtol=2e-3, atol=1e-3)
    assert not np.allclose(images[0], images[1])  # other phases: another picture


def test_natural_amplitude_falls_with_frequency_and_gives_natural_contrast():
    amplitude = params.natural_amplitude(64, 64, 3)
    row = amplitude[0, 0, 1:]  # luminance along the x axis, DC left out
    assert (np.diff(row) < 0).all()
    ratio = row[3] / row[7]  # f = 4/64 against 8/64: about 2x for a 1/f spectrum
    assert 1.6 < ratio < 3.2
    maco = params.Maco((64, 64, 3))
    image = maco.to_image(tf.constant(maco.init(np.random.default_rng(0))[None])).numpy()[0]
    assert 0.08 < image.std() < 0.3  # a photo's contrast, neither grey nor saturated
    grey = params.natural_amplitude(64, 64, 1)
    assert grey.shape == (1, 64, 33) and np.isfinite(grey).all() and (grey > 0).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_maco_from_image_keeps_the_arrangement(channels):
    """from_image keeps the phases only: a Maco picture comes back close to itself (exactly away from the
    self-conjugate columns), and a start image's layout survives under the natural amplitudes."""
    maco = params.Maco((16, 16, channels))
    image = maco.to_image(tf.constant(maco.init(np.random.default_rng(3))[None])).numpy()[0]
    again = maco.to_image(tf.constant(maco.from_image(image, np.random.default_rng(4))[None])).numpy()[0]
    assert np.corrcoef(image.ravel(), again.ravel())[0, 1] > 0.9
    ramp = np.broadcast_to(np.linspace(0.1, 0.9, 16)[None, :, None], (16, 16, channels)).astype(np.float32)
    start = maco.to_image(tf.constant(maco.from_image(ramp, np.random.default_rng(5))[None])).numpy()[0]
    assert start[:, 12:].mean() > start[:, :4].mean() + 0.05  # dark left, bright right, as the ramp


def _maco_tile_starts(size: int, count: int) -> list[np.ndarray]:
    """The full-size starts of `count` Maco pictures of `size` px through the tile start, uint8
    [size, size, 3]: each a random Maco tile of half the size (its own key), 8-bit, repeated 2x2, and read
    back by from_image with a stream of the same key."""
    from filtervis import tiles

    half, full = params.Maco((size // 2, size // 2, 3)), params.Maco((size, size, 3))
    starts = []
    for key in range(count):
        tile = half.to_image(tf.constant(half.init(np.random.default_rng([key, 0]))[None])).numpy()[0]
        picture = tiles.repeat(np.round(tile * 255) / 255, (size, size)).astype(np.float32)
        phases = full.from_image(picture, np.random.default_rng([key, 2]))
        starts.append(np.round(full.to_image(tf.constant(phases[None])).numpy()[0] * 255).astype(np.uint8))
    return starts


def test_maco_starts_from_repeated_tiles_share_no_pattern():
    """A 2x2 repeated tile has no energy at 3 in 4 of the full size's coefficients, which Maco gives
    the natural amplitude: their phases must be each picture's own, not one value in every picture
    (that adds one fixed pattern, bright at the corners, to all of them). Unrelated tiles give
    unrelated starts, and their mean has no peak at the corners."""
    from filtervis import appearance

    starts = _maco_tile_starts(32, 12)
    assert appearance.shared(starts) < 0.05
    mean = np.mean(np.stack(starts).astype(np.float64), axis=(0, 3))
    corners = mean[[0, 0, -1, -1], [0, -1, 0, -1]].mean()
    assert abs(corners - mean.mean()) < 3 * mean.std()


def test_maco_from_image_fills_only_the_coefficients_the_image_lacks():
    """A picture with energy everywhere keeps all its phases whatever the stream; a flat image's
    coefficients (all empty but the mean) take the stream's phases, so two streams give two starts."""
    maco = params.Maco((16, 16, 3))
    image = maco.to_image(tf.constant(maco.init(np.random.default_rng(3))[None])).numpy()[0]
    np.testing.assert_array_equal(maco.from_image(image, np.random.default_rng(1)),
                                  maco.from_image(image, np.random.default_rng(2)))
    flat = np.full((16, 16, 3), 0.5, np.float32)
    a, b = (maco.from_image(flat, np.random.default_rng(k)) for k in (1, 2))
    assert np.mean(np.isclose(a, b)) < 0.01
    np.testing.assert_array_equal(a, maco.from_image(flat, np.random.default_rng(1)))  # the stream decides


def test_maco_pictures_from_one_flat_seed_image_are_each_their_own(tiny_model, tmp_path):
    """A flat seed image lacks every coefficient but its mean: each filter fills them from its own
    stream, so the filters' pictures are not one shared start nudged a few steps apart."""
    import filtervis
    from PIL import Image
    from filtervis import appearance

    seed = tmp_path / "flat.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(seed)
    result = filtervis.render(tiny_model, "conv2", filters="0-5", steps=8, preprocess="tf", param="maco",
                              seed_image=str(seed), rescue=False)
    assert appearance.shared(result.images) < 0.1


def _natural_misfit(images, channel=0):
    """Median |log| of the ratio of each rfft2 amplitude of uint8 pictures [B, H, W, C], read back as
    the decorrelated planes a Maco picture is made from, to params.natural_amplitude; one colour direction,
    the self-conjugate columns left out."""
    values = _logits(np.clip(np.stack(images) / 255.0, 0.5 / 255, 1 - 0.5 / 255)) / params.MACO_SLOPE
    planes = np.stack([np.transpose(params._unmix(v), (2, 0, 1)) for v in values])
    height, width = planes.shape[2:]
    interior = slice(1, (width - 1) // 2 + 1)
    amplitude = np.abs(np.fft.rfft2(planes))[:, channel, :, interior]
    natural = params.natural_amplitude(height, width, planes.shape[1])[channel, :, interior]
    return float(np.median(np.abs(np.log(amplitude / natural))))


def test_render_with_param_maco_keeps_the_natural_amplitude_spectrum(tiny_model):
    """--param maco renders with Maco: the optimized pictures (no rescue, which reruns as pixels) have the
    natural amplitude at every frequency, in luminance and colour, up to 8-bit rounding; fft pictures of
    the same filters do not."""
    import filtervis

    options = dict(filters=[0, 3], steps=8, preprocess="tf", rescue=False)
    maco = filtervis.render(tiny_model, "conv2", param="maco", **options)
    fft = filtervis.render(tiny_model, "conv2", param="fft", **options)
    assert maco.manifest["params"]["param"] == "maco" and fft.manifest["params"]["param"] == "fft"
    assert not np.array_equal(maco.images[0], maco.images[1])  # each filter its own picture
    assert _natural_misfit(maco.images) < 0.05  # luminance: within 5% (median)
    assert _natural_misfit(maco.images, 1) < 0.15 and _natural_misfit(maco.images, 2) < 0.2  # weaker colours
    assert _natural_misfit(fft.images) > 0.3


def test_maco_image_does_not_depend_on_its_batch():
    maco = params.Maco((7, 9, 3))
    batch = np.stack([maco.init(np.random.default_rng(k)) for k in range(3)])
    together = tf.function(maco.to_image)(tf.constant(batch)).numpy()
    for k in range(3):
        np.testing.assert_array_equal(tf.function(maco.to_image)(tf.constant(batch[k:k + 1])).numpy()[0],
                                      together[k])
