"""Data augmentation for (N, 1, 16, 16) digit images in [-1, 1].

- :func:`translate` / :func:`random_translate`: true translation by whole pixels. What moves in
  from outside the image is the background (-1); what moves out is lost. Nothing wraps round
  unless asked (below).
- :func:`affine` / :func:`random_affine`: small rotations and changes of size about the image's
  centre, resampled bilinearly, with the same -1 background beyond the border.
- :func:`elastic` / :func:`random_elastic`: Simard, Steinkraus and Platt's (2003) elastic
  distortions: every pixel moved by its own small displacement, a field of uniform noise
  smoothed by a Gaussian, so that neighbouring pixels move alike and strokes bend rather than
  tear; resampled bilinearly with the -1 background beyond the border.
- ``wrap=True``: the translation of Karpathy's modern recipe, a circular shift
  (``torch.roll``): what moves out on one side comes back on the other. Offered to run his
  recipe as his code has it, not as a better choice.
- :class:`Augmentation`: all of them combined, as the mini-batch trainer applies them.

Every random draw comes from a ``torch.Generator`` the caller passes in: the same generator
state gives the same images, and the global random state is never touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .nets import BACKGROUND, check_images

SIZE = 16
#: The width (standard deviation, pixels) of the Gaussian that smooths an elastic distortion's
#: field. Simard et al. found 4 px right for 28x28 digits; these are 16x16 (x 16/28 is 2.3), and
#: 2 px keeps a stroke's bend within a few pixels.
ELASTIC_SIGMA = 2.0


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _check_whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}, got {value!r}")
    return value


def _check_range(value: object, name: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and 0.0 <= value <= high):
        raise ValueError(f"{name} must be a number in [0, {high}], got {value!r}")
    return float(value)


def _per_image(values: Tensor | float, count: int, name: str, dtype: torch.dtype) -> Tensor:
    """A scalar or an (N,) tensor of per-image values, as an (N,) tensor of ``dtype``."""
    tensor = torch.as_tensor(values)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{name} must hold numbers, got {tensor.dtype}")
    if dtype == torch.int64 and tensor.is_floating_point():
        raise ValueError(f"{name} must hold whole numbers of pixels, got {tensor.dtype}")
    if tensor.dim() == 0:
        tensor = tensor.expand(count)
    if tuple(tensor.shape) != (count,):
        raise ValueError(f"{name} must be a scalar or have shape ({count},), got "
                         f"{tuple(tensor.shape)}")
    return tensor.to(dtype)


# --- translation ------------------------------------------------------------------------------


def translate(images: Tensor, dx: Tensor | int, dy: Tensor | int, wrap: bool = False
              ) -> Tensor:
    """Move each image's content ``dx`` pixels right and ``dy`` pixels down (negative: left, up).

    ``out[n, 0, y, x] = images[n, 0, y - dy[n], x - dx[n]]``, and -1 where that falls outside the
    image; with ``wrap``, the coordinates are taken modulo 16 instead (``torch.roll``). ``dx``
    and ``dy`` are whole numbers in -16..16, one for all images or one per image.
    """
    check_images(images)
    count = len(images)
    dx = _per_image(dx, count, "dx", torch.int64)
    dy = _per_image(dy, count, "dy", torch.int64)
    if count == 0:
        return images.clone()
    reach = int(torch.maximum(dx.abs(), dy.abs()).max())
    if reach > SIZE:
        raise ValueError(f"shifts must lie in -{SIZE}..{SIZE} pixels, got {reach}")
    return _shift(images, dx, dy, reach, wrap)


def _shift(images: Tensor, dx: Tensor, dy: Tensor, reach: int, wrap: bool = False) -> Tensor:
    """:func:`translate` of checked arguments; no shift is larger than ``reach``."""
    grid = torch.arange(SIZE)
    if wrap:
        source, side = images, SIZE
        rows, cols = (grid - dy[:, None]) % SIZE, (grid - dx[:, None]) % SIZE
    else:
        # Pad by the largest shift with background, then cut each image's window out of it.
        source = F.pad(images, (reach, reach, reach, reach), value=BACKGROUND)
        side = SIZE + 2 * reach
        rows, cols = grid + reach - dy[:, None], grid + reach - dx[:, None]
    # One flat gather (torch.take) is several times faster than indexing on three axes.
    first = (torch.arange(len(images)) * side * side)[:, None, None]
    return source.take(first + rows[:, :, None] * side + cols[:, None, :]).unsqueeze(1)


def random_translate(images: Tensor, max_shift: int, generator: torch.Generator,
                     wrap: bool = False) -> Tensor:
    """Translate each image by its own shift, each axis drawn uniformly from -k..k pixels
    (``wrap``: circularly, see :func:`translate`)."""
    _check_whole(max_shift, "max_shift", 0, SIZE)
    _check_generator(generator)
    return _random_shift(check_images(images), max_shift, generator, wrap)


def _random_shift(images: Tensor, max_shift: int, generator: torch.Generator,
                  wrap: bool = False) -> Tensor:
    dx, dy = _draw_shift(len(images), max_shift, generator)
    return _shift(images, dx, dy, max_shift, wrap) if len(images) else images.clone()


def _draw_shift(count: int, max_shift: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` random shifts (dx, dy), each uniform in -k..k pixels."""
    dx = torch.randint(-max_shift, max_shift + 1, (count,), generator=generator)
    dy = torch.randint(-max_shift, max_shift + 1, (count,), generator=generator)
    return dx, dy


# --- rotation and scaling ---------------------------------------------------------------------


def affine(images: Tensor, degrees: Tensor | float, scale: Tensor | float) -> Tensor:
    """Rotate each image's content ``degrees`` anticlockwise and scale it by ``scale`` about
    the image centre, resampling bilinearly; -1 beyond the border.

    Scalars apply to every image; (N,) tensors give one value per image.
    """
    check_images(images)
    count = len(images)
    angle = torch.deg2rad(_per_image(degrees, count, "degrees", torch.float32))
    factor = _per_image(scale, count, "scale", torch.float32)
    if count == 0:
        return images.clone()
    if not bool(torch.isfinite(angle).all()) or not bool((factor > 0).all()) \
            or not bool(torch.isfinite(factor).all()):
        raise ValueError("degrees must be finite and scale finite and positive")
    return _rotate_scale(images, angle, factor)


def _rotate_scale(images: Tensor, angle: Tensor, factor: Tensor) -> Tensor:
    """:func:`affine` of checked arguments, the angles in radians."""
    return _warp(images, torch.cos(angle) / factor, torch.sin(angle) / factor)


#: The centres of a row's 16 pixels in grid_sample's coordinates (-1 and 1: the outer edges).
_CENTRES = (torch.arange(SIZE, dtype=torch.float32) * 2 + 1) / SIZE - 1


def _warp(images: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Each image read bilinearly at its pixel centres turned by ``[[cos, -sin], [sin, cos]]``
    (per image): :func:`_rotate_scale` given the rotation's cosine and sine over the scale."""
    # The grid maps output coordinates to input ones: the inverse of the wanted motion. y points
    # down in image coordinates, so an anticlockwise turn on screen is -angle here. Written out
    # (F.affine_grid's batched product costs four times the sampling on these small images).
    x, y = _CENTRES.view(1, 1, SIZE), _CENTRES.view(1, SIZE, 1)
    cos, sin = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
    grid = torch.stack([cos * x - sin * y, sin * x + cos * y], dim=3)
    # grid_sample pads with 0 only: sample images + 1 (background 0), then shift back.
    moved = F.grid_sample(images - BACKGROUND, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False) + BACKGROUND
    return moved.clamp(-1.0, 1.0)  # rounding may step a hair outside [-1, 1]


def random_affine(images: Tensor, max_degrees: float, max_scale: float,
                  generator: torch.Generator) -> Tensor:
    """Rotate each image by an angle uniform in +-``max_degrees`` and scale it by a factor
    uniform in [1 - ``max_scale``, 1 + ``max_scale``]."""
    _check_range(max_degrees, "max_degrees", 180.0)
    _check_range(max_scale, "max_scale", 0.5)
    _check_generator(generator)
    return _random_rotate_scale(check_images(images), max_degrees, max_scale, generator)


def _random_rotate_scale(images: Tensor, max_degrees: float, max_scale: float,
                         generator: torch.Generator) -> Tensor:
    turns = _draw_rotate_scale(len(images), max_degrees, max_scale, generator)
    return _warp(images, *turns) if len(images) else images.clone()


def _draw_rotate_scale(count: int, max_degrees: float, max_scale: float,
                       generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` random turns as :func:`_warp` takes them: cosine and sine over the scale."""
    return _turns([_draw_turns(count, generator)], [max_degrees], [max_scale])


def _draw_turns(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The uniform numbers behind ``count`` random turns: the angles', then the scales'."""
    return torch.rand(count, generator=generator), torch.rand(count, generator=generator)


def _turns(draws: Sequence[tuple[Tensor, Tensor]], max_degrees: Sequence[float],
           max_scale: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Several members' turns (:func:`_draw_turns`, each with its own ranges) as :func:`_warp`
    takes them, in one batch: the arithmetic is element-wise and correctly rounded, so each
    image gets what its member alone computes; the cosine and sine, whose vector and scalar
    code may round differently, are taken member by member, as alone."""
    counts = [len(angles) for angles, _ in draws]

    def spread(values: Sequence[float]) -> Tensor | float:
        if len(set(values)) == 1:
            return values[0]
        return torch.tensor(values, dtype=torch.float32).repeat_interleave(torch.tensor(counts))

    degrees = (torch.cat([angles for angles, _ in draws]) * 2 - 1) * spread(max_degrees)
    scale = 1 + (torch.cat([scales for _, scales in draws]) * 2 - 1) * spread(max_scale)
    angle = torch.deg2rad(degrees).split(counts)
    cos = torch.cat([torch.cos(part) for part in angle])
    sin = torch.cat([torch.sin(part) for part in angle])
    return cos / scale, sin / scale


# --- elastic distortion -----------------------------------------------------------------------


def _gaussian(sigma: float) -> Tensor:
    """A normalised 1-D Gaussian kernel of width ``sigma``, 3 sigma each side."""
    reach = math.ceil(3 * sigma)
    x = torch.arange(-reach, reach + 1, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def smooth_field(noise: Tensor, sigma: float = ELASTIC_SIGMA) -> Tensor:
    """(N, 2, 16, 16) per-pixel noise smoothed by a Gaussian of width ``sigma`` along each axis
    (zero beyond the border, as Simard et al.'s convolution)."""
    kernel = _gaussian(sigma)
    reach = (len(kernel) - 1) // 2
    count = len(noise)
    flat = noise.reshape(count * 2, 1, SIZE, SIZE)
    flat = F.conv2d(F.pad(flat, (reach, reach, 0, 0)), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, reach, reach)), kernel.view(1, 1, -1, 1))
    return flat.reshape(count, 2, SIZE, SIZE)


def elastic(images: Tensor, field: Tensor) -> Tensor:
    """Move each pixel of each image by its own displacement: ``out[n, 0, y, x]`` is the image
    read (bilinearly) at ``(x + field[n, 0, y, x], y + field[n, 1, y, x])``, in pixels; -1
    beyond the border. ``field``: (N, 2, 16, 16), finite."""
    check_images(images)
    if not isinstance(field, Tensor) or field.dtype != torch.float32 \
            or tuple(field.shape) != (len(images), 2, SIZE, SIZE):
        raise ValueError(f"field must be a float32 tensor of shape ({len(images)}, 2, {SIZE}, "
                         f"{SIZE}), got {getattr(field, 'dtype', type(field).__name__)} "
                         f"{tuple(getattr(field, 'shape', ()))}")
    if not bool(torch.isfinite(field).all()):
        raise ValueError("field must be finite")
    return _displace(images, field) if len(images) else images.clone()


def _displace(images: Tensor, field: Tensor) -> Tensor:
    """:func:`elastic` of checked arguments."""
    rows, cols = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32),
                                torch.arange(SIZE, dtype=torch.float32), indexing="ij")
    # grid_sample's coordinates: -1 and 1 are the outer edges of the first and last pixels.
    x = (cols + field[:, 0] + 0.5) * (2 / SIZE) - 1
    y = (rows + field[:, 1] + 0.5) * (2 / SIZE) - 1
    moved = F.grid_sample(images - BACKGROUND, torch.stack([x, y], dim=3), mode="bilinear",
                          padding_mode="zeros", align_corners=False) + BACKGROUND
    return moved.clamp(-1.0, 1.0)


def random_elastic(images: Tensor, alpha: float, generator: torch.Generator,
                   sigma: float = ELASTIC_SIGMA) -> Tensor:
    """Simard et al.'s elastic distortion: each image's field is uniform noise in [-1, 1] per
    pixel and axis, smoothed by :func:`smooth_field` and scaled by ``alpha`` pixels."""
    _check_range(alpha, "alpha", 64.0)
    _check_range(sigma, "sigma", 8.0)
    if sigma == 0:
        raise ValueError("sigma must be > 0")
    _check_generator(generator)
    return _random_elastic(check_images(images), alpha, generator, sigma)


def _random_elastic(images: Tensor, alpha: float, generator: torch.Generator,
                    sigma: float = ELASTIC_SIGMA) -> Tensor:
    noise = _draw_noise(len(images), generator)
    if len(images) == 0:
        return images.clone()
    return _displace(images, alpha * smooth_field(noise, sigma))


def _draw_noise(count: int, generator: torch.Generator) -> Tensor:
    """An elastic distortion's raw field: uniform noise in [-1, 1], (count, 2, 16, 16)."""
    return torch.rand((count, 2, SIZE, SIZE), generator=generator) * 2 - 1


@dataclass(frozen=True)
class Augmentation:
    """Random translation by up to ``translate`` pixels (circular with ``wrap``), then rotation
    by up to ``rotate`` degrees and scaling by up to ``scale`` (relative), then an elastic
    distortion of strength ``elastic`` pixels (:func:`random_elastic`). All zero: no
    augmentation."""

    translate: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    wrap: bool = False
    elastic: float = 0.0

    def __post_init__(self) -> None:
        _check_whole(self.translate, "translate", 0, SIZE)
        if not isinstance(self.wrap, bool):
            raise ValueError(f"wrap must be True or False, got {self.wrap!r}")
        _check_range(self.rotate, "rotate", 180.0)
        _check_range(self.scale, "scale", 0.5)
        _check_range(self.elastic, "elastic", 64.0)

    @property
    def active(self) -> bool:
        return bool(self.translate or self.rotate or self.scale or self.elastic)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        _check_generator(generator)
        return self.unchecked(check_images(images), generator)

    def unchecked(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``self(images, generator)`` (the same draws, the same images) without checking the
        images: for a trainer that checked its digits once, not every mini-batch."""
        return augment_stack(images.unsqueeze(0), [self], [generator])[0]


def augment_stack(batches: Tensor, augmentations: Sequence[Augmentation],
                  generators: Sequence[torch.Generator]) -> Tensor:
    """Several networks' mini-batches at once: ``batches`` (K, B, 1, 16, 16), member k's
    augmented by ``augmentations[k]`` with ``generators[k]``.

    Each member draws from its own generator what its augmentation alone draws, in the same
    order (so its images are those of ``augmentations[k].unchecked(batches[k], generators[k])``,
    bit for bit); each operation is then applied in one call to every member that has it.
    The images are not checked (the caller checked its digits once).
    """
    if not len(batches) == len(augmentations) == len(generators):
        raise ValueError(f"{len(batches)} mini-batches, {len(augmentations)} augmentations and "
                         f"{len(generators)} generators")
    count = batches.shape[1]
    shifts: dict[int, tuple[Tensor, Tensor]] = {}
    turns: dict[int, tuple[Tensor, Tensor]] = {}  # uniform draws (_draw_turns)
    noise: dict[int, Tensor] = {}
    for k, (augmentation, generator) in enumerate(zip(augmentations, generators)):
        if augmentation.translate:
            shifts[k] = _draw_shift(count, augmentation.translate, generator)
        if augmentation.rotate or augmentation.scale:
            turns[k] = _draw_turns(count, generator)
        if augmentation.elastic:
            noise[k] = _draw_noise(count, generator)
    out = batches.clone()
    if count == 0:
        return out
    for wrap in (False, True):
        members = [k for k in shifts if augmentations[k].wrap == wrap]
        if members:
            reach = max(augmentations[k].translate for k in members)
            dx, dy = (torch.cat([shifts[k][axis] for k in members]) for axis in (0, 1))
            _apply(out, members, lambda images: _shift(images, dx, dy, reach, wrap))
    if turns:
        cos, sin = _turns(list(turns.values()), [augmentations[k].rotate for k in turns],
                          [augmentations[k].scale for k in turns])
        _apply(out, list(turns), lambda images: _warp(images, cos, sin))
    if noise:
        alphas = torch.tensor([augmentations[k].elastic for k in noise]).repeat_interleave(count)
        field = smooth_field(torch.cat(list(noise.values()))) * alphas.view(-1, 1, 1, 1)
        _apply(out, list(noise), lambda images: _displace(images, field))
    return out


def _apply(batches: Tensor, members: list[int], operation: Callable[[Tensor], Tensor]) -> None:
    """Replace the listed members' mini-batches (in ``batches``, (K, B, 1, 16, 16)) by the
    operation applied to all of them as one (len(members) * B, 1, 16, 16) batch."""
    shape = batches.shape[1:]
    if members == list(range(len(batches))):
        batches.copy_(operation(batches.reshape(-1, *shape[1:])).reshape(batches.shape))
        return
    index = torch.tensor(members)
    moved = operation(batches[index].reshape(-1, *shape[1:]))
    batches[index] = moved.reshape(len(members), *shape)
