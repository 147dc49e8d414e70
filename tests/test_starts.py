"""Start images: exact values on tiny arrays, shapes for 1, 3 and 4 channels, determinism."""

import numpy as np
import pytest

from filtervis import starts


def test_grating_and_edge_on_a_row_of_four_pixels():
    # pixel centres at -1.5, -0.5, 0.5, 1.5 px from the image centre; cos(2 pi x / 4) = -0.71, 0.71, 0.71, -0.71
    square = starts.grating(1, 4, 1, period=4, angle=0.0, square=True)
    assert square[0, :, 0].tolist() == [0, 1, 1, 0]
    sine = starts.grating(1, 4, 1, period=4, angle=0.0)
    assert sine[0, :, 0] == pytest.approx([0.1464, 0.8536, 0.8536, 0.1464], abs=1e-4)
    edge = starts.edge(1, 4, 3, angle=0.0, low=[0.0, 0.2, 0.4], high=1.0)
    assert edge[0, :, 1].tolist() == pytest.approx([0.2, 0.2, 1.0, 1.0])
    flipped = starts.edge(1, 4, 1, angle=np.pi)  # pointing left: bright on the left
    assert flipped[0, :, 0].tolist() == [1, 1, 0, 0]


def test_flat_colours_are_greys_then_each_channel_alone_on_and_off():
    colours = starts.flat_colours(3)
    assert len(colours) == len(starts.FLAT_LEVELS) + 6
    assert colours[len(starts.FLAT_LEVELS)].tolist() == [1, 0, 0] and colours[-1].tolist() == [1, 1, 0]
    assert len(starts.flat_colours(1)) == len(starts.FLAT_LEVELS)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_bank_shape_range_and_determinism(channels):
    bank = starts.bank(12, 20, channels, seed=5)
    assert bank.dtype == np.float32 and bank.shape[1:] == (12, 20, channels)
    assert bank.min() >= 0 and bank.max() <= 1
    assert np.array_equal(bank, starts.bank(12, 20, channels, seed=5))
    assert not np.array_equal(bank, starts.bank(12, 20, channels, seed=6))
    assert (bank.std(axis=(1, 2, 3)) > 0).sum() >= len(bank) - len(starts.flat_colours(channels)) - starts.BANK_TEXTURES


def test_pink_noise_has_more_power_at_low_frequencies():
    image = starts.pink_noise(np.random.default_rng(0), 64, 64, 1)[..., 0]
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    assert power[1:4, 1:4].mean() > 20 * power[28:36, 28:36].mean()


def test_bad_sizes_say_what_was_found():
    with pytest.raises(ValueError, match="but were 0, 4, 3"):
        starts.grating(0, 4, 3, period=4, angle=0.0)
