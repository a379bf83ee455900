"""Textures: a generated image-classification set, the package's own, that needs no download.

Each image (``size`` x ``size`` RGB, default 16x16) is a noisy striped texture. Its class is one of ten: the
stripes run at one of five orientations (0, 36, 72, 108 or 144 degrees, each jittered by a Gaussian of
``jitter`` degrees) and have a fine (period 3-4.2 px) or a coarse (5-7.5 px) period, with a random phase. Over the
stripes lie a smooth random field (``clutter``) and pixel noise (``noise``). Every image then gets its own
contrast (a gain from ``contrast`` to 1), brightness and colour tint, so the statistics of a few images differ
from those of the whole set. The classes are balanced (the same count of each, shuffled).

Difficulty, measured with ResNet-8 (4 virtual devices, 15 epochs, cosine LR 0.2, GN with 8 groups; one seed):
the defaults (``noise=0.3, jitter=9``) train to ~5 % validation error for BN and GN at 32 and at 2 images per
device alike, near the error floor the jitter sets (``2 Phi(-18 / jitter)``, 4.6 % at 9 degrees). At
``noise=0.9`` (then with a uniform jitter of up to 12 degrees) training sits at chance for several epochs and BN
at 2 images per device ends far behind BN at 32 (63 % vs 30 %), but so does GN at 32 (58-72 %). It is an
offline data set for trying recipes, not (yet) the demo's.

Everything is a pure function of the arguments: the same seed gives the same bytes on every machine (NumPy's PCG64
from a fixed SeedSequence; the training and test images come from separate streams, so they differ). Generation
is vectorised over the images and takes well under a second for 5,000 images of 16x16.

Example::

    from groupnorm.repro.synthetic import make_textures
    data = make_textures(n_train=3000, n_test=2000)   # an ImageData, like load_dataset("textures")
    data.train_images.shape                           # torch.Size([3000, 3, 16, 16]), uint8

From the command line: ``groupnorm repro --dataset textures`` (the defaults), or with options,
``--dataset textures:train=4000,test=2000,size=24,seed=1,noise=0.5``.
"""

from __future__ import annotations

import numpy as np
import torch

from groupnorm.repro.augment import Augment
from groupnorm.repro.image_data import ImageData

ORIENTATIONS = 5
CLASSES = [f"{band}-{180 * k // ORIENTATIONS}deg" for band in ("fine", "coarse") for k in range(ORIENTATIONS)]
PERIODS = ((3.0, 4.2), (5.0, 7.5))  # stripe period in pixels of the fine and the coarse band
# The keyword arguments of make_textures, with their defaults; the ``textures:key=value`` spec sets them.
DEFAULTS: dict[str, float] = {
    "train": 3000,
    "test": 2000,
    "size": 16,
    "seed": 0,
    "noise": 0.3,
    "jitter": 9.0,
    "clutter": 1.0,
    "contrast": 0.3,
}
_INT_KEYS = ("train", "test", "size", "seed")


def smooth_field(rng: np.random.Generator, n: int, size: int, cells: int = 4) -> np.ndarray:
    """(n, 1, size, size) smooth random values in [0, 1]: a ``cells`` x ``cells`` grid, bilinearly upsampled."""
    grid = rng.random((n, 1, cells, cells), dtype=np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(size, size), mode="bilinear")
    return up.numpy()


def render_textures(
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    noise: float = DEFAULTS["noise"],
    jitter: float = DEFAULTS["jitter"],
    clutter: float = DEFAULTS["clutter"],
    contrast: float = DEFAULTS["contrast"],
) -> np.ndarray:
    """One image of each class in ``labels`` (ints in 0..9): (N, 3, size, size) uint8.

    ``noise``: standard deviation of the pixel noise relative to the stripes' full swing. ``jitter``: standard
    deviation, in degrees, of the orientation's Gaussian offset (classes are 36 degrees apart, so some images lie
    nearer another class's orientation). ``clutter``: strength of the smooth background field. ``contrast``: the
    smallest per-image gain (1 keeps every image at full contrast).
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"texture classes are 0..{len(CLASSES) - 1}")
    if not 0 < contrast <= 1:
        raise ValueError(f"contrast must be in (0, 1], got {contrast}")
    n, f32 = len(labels), np.float32
    orient, band = labels % ORIENTATIONS, labels // ORIENTATIONS
    theta = np.deg2rad(orient * (180 / ORIENTATIONS) + jitter * rng.standard_normal(n))
    (f_lo, f_hi), (c_lo, c_hi) = PERIODS
    period = np.where(band == 0, rng.uniform(f_lo, f_hi, n), rng.uniform(c_lo, c_hi, n))
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    proj = np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * proj / period[:, None, None] + phase[:, None, None])
    p = stripes[:, None].astype(f32)
    amp = (clutter * rng.uniform(0.2, 0.6, (n, 1, 1, 1))).astype(f32)
    p = p + amp * (smooth_field(rng, n, size) - 0.5)
    p = np.clip(p + noise * rng.standard_normal(p.shape, dtype=f32), 0, 1)
    # each image its own contrast, brightness and colour tint (the same polarity in every channel)
    gain = np.exp(rng.uniform(np.log(contrast), 0, (n, 1, 1, 1))).astype(f32)
    offset = (rng.random((n, 1, 1, 1), dtype=f32) * (1 - gain)).astype(f32)
    tint = rng.uniform(0.3, 1.0, (n, 3, 1, 1)).astype(f32)
    img = (offset + gain * p) * tint
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_textures(
    n_train: int = int(DEFAULTS["train"]),
    n_test: int = int(DEFAULTS["test"]),
    size: int = int(DEFAULTS["size"]),
    seed: int = int(DEFAULTS["seed"]),
    **render: float,
) -> ImageData:
    """The textures set: ``n_train`` training and ``n_test`` test images of ``size`` x ``size``, balanced classes.

    ``render`` takes the difficulty keywords of :func:`render_textures` (noise, jitter, clutter, contrast).
    The training augmentation is a random translation by up to ``size // 8`` pixels (no flips: a flip would
    turn one orientation class into another).
    """
    if n_train < len(CLASSES) or n_test < 1:
        raise ValueError(
            f"textures: need at least {len(CLASSES)} training and 1 test image, got {n_train} and {n_test}"
        )
    if size < 8:
        raise ValueError(f"textures: size must be >= 8, got {size}")
    parts = []
    for n, seq in zip((n_train, n_test), np.random.SeedSequence([seed, 0x7E57]).spawn(2)):
        rng = np.random.Generator(np.random.PCG64(seq))
        labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
        parts += [torch.from_numpy(render_textures(labels, size, rng, **render)), torch.from_numpy(labels)]
    name = f"textures {size}x{size}" + (f" seed {seed}" if seed else "")
    return ImageData(name, *parts, list(CLASSES), Augment(pad=max(1, size // 8), flip=False))


def load_textures_spec(options: str = "") -> ImageData:
    """The dataset of the spec ``textures`` or ``textures:key=value,...`` (keys: those of ``DEFAULTS``)."""
    kw = textures_options(options)
    sizes = {k: int(kw.pop(k)) for k in _INT_KEYS if k in kw}
    return make_textures(
        sizes.get("train", int(DEFAULTS["train"])),
        sizes.get("test", int(DEFAULTS["test"])),
        sizes.get("size", int(DEFAULTS["size"])),
        sizes.get("seed", int(DEFAULTS["seed"])),
        **kw,
    )


def textures_options(options: str = "") -> dict[str, float]:
    """The ``key=value,...`` options of a ``textures:`` spec, parsed (a clear error for a bad one)."""
    kw: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in options.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in DEFAULTS:
            raise ValueError(
                f"dataset: textures options are key=value with keys {', '.join(DEFAULTS)}; got {item!r}"
            )
        try:
            kw[key] = int(value) if key in _INT_KEYS else float(value)
        except ValueError:
            raise ValueError(f"dataset: textures option {key} wants a number, got {value!r}") from None
    return kw
