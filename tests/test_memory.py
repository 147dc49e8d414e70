"""Memory planning: the batch that fits a budget, and the refusal when one image cannot."""

import pytest

from conftest import tiny_conv_model
from filtervis import memory, models
from filtervis.errors import SpecError

IMAGE = (16, 16, 3)


def _shapes():
    """Output shapes of the tiny model's layers up to conv2, as `run` plans them."""
    shapes = models.layer_shapes(tiny_conv_model())
    return [shapes[p] for p in list(shapes)[:list(shapes).index("conv2") + 1]]


def test_values_count_every_output_up_to_the_layer():
    assert memory.activation_values(_shapes(), IMAGE) == 16 * 16 * (3 + 4 + 6)
    assert memory.activation_values([None, (2,)], (4, 5, 1)) == 20  # at least the image


def test_auto_batch_respects_the_budget():
    shapes = _shapes()
    per_image = memory.bytes_per_image(shapes, IMAGE)
    assert per_image >= 16 * 16 * (3 + 4 + 6) * 4
    assert memory.auto_batch(shapes, IMAGE, 100, budget=per_image * 3) == 3
    assert memory.auto_batch(shapes, IMAGE, 2, budget=per_image * 100) == 2
    assert memory.auto_batch(shapes, IMAGE, 100, budget=1) == 1


def test_memory_plan_fits_the_budget_and_refuses_what_cannot_fit():
    shapes = _shapes()
    per_image = memory.bytes_per_image(shapes, IMAGE)
    base = memory.resident_memory()
    fixed = memory.SCALE_IMAGES * memory.activation_values(shapes, IMAGE) * 4 + memory.RUNTIME_MARGIN
    plan = memory.plan_memory(shapes, IMAGE, 100, budget=base + fixed + 3 * per_image + per_image // 2)
    assert plan.batch == 3 and plan.peak <= plan.budget
    assert memory.plan_memory(shapes, IMAGE, 5, budget=base + 2**30).batch == 5
    assert memory.plan_memory(shapes, IMAGE, 100, budget=base + 2**30).batch == memory.MAX_AUTO_BATCH
    with pytest.raises(SpecError, match="raise --memory-budget or lower --size"):
        memory.plan_memory(shapes, IMAGE, 100, budget=1024)
