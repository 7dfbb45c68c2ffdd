from __future__ import annotations

import pytest
import torch

from lenet1.augment import (
    Augmentation,
    affine,
    augment_stack,
    elastic,
    random_affine,
    random_elastic,
    random_translate,
    smooth_field,
    translate,
)
from lenet1.nets import ShapeError

from .conftest import random_images


def _reference_translate(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Pixel by pixel: out[y, x] = in[y - dy, x - dx], -1 outside."""
    out = torch.full_like(image, -1.0)
    for y in range(16):
        for x in range(16):
            if 0 <= y - dy < 16 and 0 <= x - dx < 16:
                out[0, y, x] = image[0, y - dy, x - dx]
    return out


def test_translation_moves_content_exactly_and_fills_with_background():
    images = random_images(7)
    shifts = [(0, 0), (1, 0), (0, -1), (3, -2), (-4, 5), (15, 0), (-16, 16)]
    dx = torch.tensor([s[0] for s in shifts])
    dy = torch.tensor([s[1] for s in shifts])
    moved = translate(images, dx, dy)
    for n, (sx, sy) in enumerate(shifts):
        assert torch.equal(moved[n], _reference_translate(images[n], sx, sy)), (sx, sy)


def test_nothing_wraps_round():
    image = -torch.ones(1, 1, 16, 16)
    image[0, 0, :, 15] = 1.0  # ink in the right-most column
    right = translate(image, 1, 0)
    assert float(right.max()) == -1.0  # pushed out, not wrapped to column 0
    left = translate(image, -1, 0)
    assert torch.equal(left[0, 0, :, 14], torch.ones(16)) and float(left[0, 0, :, 15].max()) == -1
    down = translate(random_images(1), 0, 2)
    assert float(down[0, 0, :2].max()) == -1.0 == float(down[0, 0, :2].min())


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, -1), (1, 1), (-1, 1), (3, -2)])
def test_a_wrapped_shift_is_torch_roll(dx, dy):
    # Karpathy's circular shift: what leaves on one side comes back on the other.
    images = random_images(4)
    assert torch.equal(translate(images, dx, dy, wrap=True), torch.roll(images, (dy, dx), (2, 3)))
    image = -torch.ones(1, 1, 16, 16)
    image[0, 0, :, 15] = 1.0
    assert torch.equal(translate(image, 1, 0, wrap=True)[0, 0, :, 0], torch.ones(16))


def test_zero_shift_is_the_identity():
    images = random_images(5)
    assert torch.equal(translate(images, 0, 0), images)
    assert torch.equal(random_translate(images, 0, torch.Generator().manual_seed(1)), images)
    assert translate(images[:0], 1, 1).shape == (0, 1, 16, 16)


def test_random_shifts_are_per_image_bounded_and_reproducible():
    image = -torch.ones(200, 1, 16, 16)
    image[:, 0, 8, 8] = 1.0  # one lit pixel: where it lands is the shift
    before = torch.get_rng_state()
    moved = random_translate(image, 2, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left alone
    lit = (moved[:, 0] > 0).nonzero()
    assert len(lit) == 200
    dy, dx = lit[:, 1] - 8, lit[:, 2] - 8
    assert int(dx.abs().max()) == 2 == int(dy.abs().max())
    assert len(set(zip(dx.tolist(), dy.tolist()))) == 25  # every shift in -2..2 occurs
    again = random_translate(image, 2, torch.Generator().manual_seed(3))
    other = random_translate(image, 2, torch.Generator().manual_seed(4))
    assert torch.equal(moved, again) and not torch.equal(moved, other)


def test_affine_identity_rotation_and_background():
    images = random_images(4)
    assert torch.allclose(affine(images, 0.0, 1.0), images, atol=1e-5)
    dot = -torch.ones(1, 1, 16, 16)
    dot[0, 0, 7, 12] = 1.0  # 4.5 px right of the centre (7.5, 7.5), 0.5 px above
    turned = affine(dot, 90.0, 1.0)  # anticlockwise: to 4.5 px above, 0.5 px left
    assert (turned[0, 0] > 0.99).nonzero().tolist() == [[3, 7]]
    shrunk = affine(torch.ones(1, 1, 16, 16), 0.0, 0.5)
    assert float(shrunk[0, 0, 0, 0]) == -1.0 and float(shrunk[0, 0, 8, 8]) == 1.0
    varied = random_affine(images, 15.0, 0.2, torch.Generator().manual_seed(0))
    assert float(varied.min()) >= -1.0 and float(varied.max()) <= 1.0
    assert torch.equal(varied, random_affine(images, 15.0, 0.2,
                                             torch.Generator().manual_seed(0)))


def test_augmentation_combines_and_is_reproducible():
    images = random_images(16)
    assert not Augmentation().active
    assert torch.equal(Augmentation()(images, torch.Generator()), images)
    both = Augmentation(translate=1, rotate=10.0, scale=0.1)
    first = both(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, both(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, images)


def test_unchecked_augmentation_draws_and_gives_the_same():
    images = random_images(16)
    for augmentation in (Augmentation(translate=2), Augmentation(rotate=10.0, scale=0.1),
                         Augmentation(translate=1, rotate=10.0, scale=0.1)):
        checked, unchecked = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        for _ in range(3):  # the generators stay in step, draw after draw
            assert torch.equal(augmentation(images, checked),
                               augmentation.unchecked(images, unchecked))
    assert torch.equal(random_translate(images, 2, torch.Generator().manual_seed(1)),
                       Augmentation(translate=2)(images, torch.Generator().manual_seed(1)))


def test_a_uniform_elastic_field_is_a_translation():
    # Every pixel moved by the same whole number of pixels: the image read one pixel off,
    # which is what translate does the other way round.
    images = random_images(4)
    field = torch.zeros(4, 2, 16, 16)
    field[:, 0] = 1.0  # read at x + 1: the content moves one pixel left
    field[:, 1] = -2.0  # read at y - 2: two pixels down
    assert torch.allclose(elastic(images, field), translate(images, -1, 2), atol=1e-6)
    assert torch.allclose(elastic(images, torch.zeros(4, 2, 16, 16)), images, atol=1e-6)


def test_elastic_fields_are_smooth_and_their_strength_scales_them():
    noise = torch.rand((200, 2, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    smooth = smooth_field(noise)
    # Smoothing makes neighbours move alike: the field changes far less from one pixel to the
    # next than the noise does.
    def step(f: torch.Tensor) -> float:
        return float((f[..., 1:] - f[..., :-1]).abs().mean())
    assert step(smooth) < 0.2 * step(noise)
    images = random_images(8)
    weak = random_elastic(images, 2.0, torch.Generator().manual_seed(3))
    strong = random_elastic(images, 16.0, torch.Generator().manual_seed(3))
    assert float((weak - images).abs().mean()) < float((strong - images).abs().mean())
    assert float(strong.min()) >= -1.0 and float(strong.max()) <= 1.0
    assert torch.equal(strong, random_elastic(images, 16.0, torch.Generator().manual_seed(3)))


def test_elastic_augmentation_comes_last_and_draws_from_the_same_generator():
    images = random_images(6)
    both = Augmentation(translate=1, elastic=8.0)
    assert both.active and Augmentation(elastic=4.0).active
    first, second = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    expected = random_elastic(random_translate(images, 1, second), 8.0, second)
    assert torch.equal(both(images, first), expected)


def test_the_rotation_grid_is_affine_grids():
    # The sampling grid is written out rather than built by F.affine_grid: the same
    # coordinates, to float32 rounding, so the same images to rounding.
    images = random_images(8)
    angle = torch.linspace(-0.4, 0.4, 8)
    factor = torch.linspace(0.85, 1.15, 8)
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    zero = torch.zeros(8)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, [8, 1, 16, 16], align_corners=False)
    expected = torch.nn.functional.grid_sample(images + 1, grid, align_corners=False) - 1
    got = affine(images, torch.rad2deg(angle), factor)
    assert (got - expected.clamp(-1, 1)).abs().max() < 1e-5


def _one_by_one(augmentation: Augmentation, images: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """What an augmentation does, one public operation after another."""
    if augmentation.translate:
        images = random_translate(images, augmentation.translate, generator, augmentation.wrap)
    if augmentation.rotate or augmentation.scale:
        images = random_affine(images, augmentation.rotate, augmentation.scale, generator)
    if augmentation.elastic:
        images = random_elastic(images, augmentation.elastic, generator)
    return images


def test_a_stack_of_augmentations_gives_each_member_its_own():
    members = [Augmentation(translate=1), Augmentation(),
               Augmentation(rotate=10.0, scale=0.1), Augmentation(translate=2, elastic=8.0),
               Augmentation(translate=1, wrap=True), Augmentation(translate=1, rotate=5.0)]
    batches = torch.stack([random_images(7) for _ in members])
    together = [torch.Generator().manual_seed(40 + k) for k in range(len(members))]
    alone = [torch.Generator().manual_seed(40 + k) for k in range(len(members))]
    for _ in range(2):  # the generators stay in step, draw after draw
        stacked = augment_stack(batches, members, together)
        for k, augmentation in enumerate(members):
            assert torch.equal(stacked[k], _one_by_one(augmentation, batches[k], alone[k]))
    assert torch.equal(stacked[1], batches[1])  # no augmentation: the images as they were
    with pytest.raises(ValueError, match="augmentations"):
        augment_stack(batches, members[:2], together[:2])


@pytest.mark.parametrize("call", [
    lambda x: elastic(x, torch.zeros(len(x), 2, 16, 15)),
    lambda x: elastic(x, torch.zeros(len(x), 2, 16, 16, dtype=torch.float64)),
    lambda x: elastic(x, torch.full((len(x), 2, 16, 16), float("nan"))),
    lambda x: random_elastic(x, -1.0, torch.Generator()),
    lambda x: random_elastic(x, 4.0, torch.Generator(), sigma=0.0),
    lambda x: Augmentation(elastic=float("inf")),
    lambda x: translate(x, 1.5, 0),
    lambda x: translate(x, 17, 0),
    lambda x: translate(x, torch.tensor([1, 2]), 0),
    lambda x: translate(x, True, 0),
    lambda x: random_translate(x, -1, torch.Generator()),
    lambda x: random_translate(x, 1.0, torch.Generator()),
    lambda x: affine(x, 0.0, 0.0),
    lambda x: affine(x, float("nan"), 1.0),
    lambda x: random_affine(x, -5.0, 0.1, torch.Generator()),
    lambda x: random_affine(x, 5.0, 0.9, torch.Generator()),
    lambda x: Augmentation(translate=-1),
    lambda x: Augmentation(rotate=float("inf")),
    lambda x: Augmentation(translate=1, wrap="yes"),  # type: ignore[arg-type]
])
def test_bad_arguments_raise_value_errors(call):
    with pytest.raises(ValueError):
        call(random_images(3))


def test_bad_images_and_generators_are_refused():
    with pytest.raises(ShapeError):
        translate(torch.zeros(3, 16, 16), 1, 1)
    with pytest.raises(ShapeError):
        translate(torch.full((1, 1, 16, 16), 2.0), 1, 1)
    with pytest.raises(TypeError, match="Generator"):
        random_translate(random_images(2), 1, 0)  # type: ignore[arg-type]
