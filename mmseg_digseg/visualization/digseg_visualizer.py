"""A visualizer whose pictures stay readable on small images (SynthShapes is 64x64).

MMSeg's ``SegLocalVisualizer`` paints ground truth and prediction at the image's own size and puts a
label box on every object: at 64 px the boxes cover the objects. ``DiGSegVisualizer`` writes instead::

      image          ground truth       prediction
    +---------+     +---------+        +---------+
    |         |     |  (mask  |        |  (mask  |
    |         |     |  over   |        |  over   |
    |         |     |  image) |        |  image) |
    +---------+     +---------+        +---------+
    [#] background  [#] disc  [#] ring  [#] ignored        <- one legend

Every panel is enlarged by an integer factor with nearest-neighbour upsampling (``scale``, or the
smallest factor that makes the short side at least ``min_size``), so label pixels stay crisp squares.
Masks are blended over the image with ``alpha`` (1.0: flat colour maps), with thin white lines along
the boundaries between labels. Colours come from the dataset
palette (``dataset_meta['palette']``, set by the Runner from the dataset); classes without one get a
seeded random colour. Labels outside ``[0, num_classes)`` (255 with a few classes, 65535 with 16-bit
label files) and ``ignore_index`` are drawn grey. The legend lists the classes present in ground truth
or prediction, or all classes when there are at most ``legend_all_max`` of them.

It is a drop-in for ``SegLocalVisualizer``: ``SegVisualizationHook`` (``tools/test.py --show-dir``)
calls ``add_datasample`` as before, and the picture goes to the visualizer's backends (or ``out_file``).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmengine.dist import master_only
from mmseg.registry import VISUALIZERS
from mmseg.visualization import SegLocalVisualizer
from PIL import Image, ImageDraw, ImageFont

IGNORE_COLOUR = (128, 128, 128)


def full_palette(palette: Optional[Sequence], num_classes: int, seed: int = 0) -> np.ndarray:
    """(num_classes, 3) uint8: the given palette, completed with seeded random colours if short."""
    colours = np.zeros((num_classes, 3), np.uint8)
    given = [] if palette is None else list(palette)[:num_classes]
    if given:
        colours[:len(given)] = np.asarray(given, np.int64).reshape(-1, 3).clip(0, 255)
    if len(given) < num_classes:
        rng = np.random.default_rng(seed)
        colours[len(given):] = rng.integers(0, 256, (num_classes - len(given), 3))
    return colours


def valid_labels(labels: np.ndarray, num_classes: int, ignore_index: Optional[int] = None) -> np.ndarray:
    """Boolean map of the pixels that carry a class: in ``[0, num_classes)`` and not ``ignore_index``."""
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return valid


def label_colours(labels: np.ndarray, palette: np.ndarray, ignore_index: Optional[int] = None,
                  ignore_colour: Sequence[int] = IGNORE_COLOUR) -> np.ndarray:
    """(H, W) integer labels (any width: 16-bit ids too) -> (H, W, 3) uint8 colours; invalid -> grey."""
    labels = np.asarray(labels).astype(np.int64)
    num_classes = len(palette)
    lut = np.concatenate([np.asarray(palette, np.uint8).reshape(-1, 3),
                          np.asarray(ignore_colour, np.uint8).reshape(1, 3)])
    index = np.where(valid_labels(labels, num_classes, ignore_index), labels, num_classes)
    return lut[index]


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any image array (H, W), (H, W, 1|3|4), any dtype -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        lo, hi = float(image.min()), float(image.max())
        image = np.zeros_like(image) if hi <= lo else (image - lo) / (hi - lo) * 255
        image = image.round().astype(np.uint8)
    return np.ascontiguousarray(image)


def _resize_nearest(labels: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array of any dtype (labels keep their exact values)."""
    if labels.shape == tuple(shape):
        return labels
    rows = (np.arange(shape[0]) * labels.shape[0] // shape[0]).clip(0, labels.shape[0] - 1)
    cols = (np.arange(shape[1]) * labels.shape[1] // shape[1]).clip(0, labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def _load_font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> Tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


@VISUALIZERS.register_module()
class DiGSegVisualizer(SegLocalVisualizer):
    """Image | ground truth | prediction side by side, enlarged, with one legend.

    Args:
        name, image, vis_backends, save_dir, classes, palette, dataset_name: as ``SegLocalVisualizer``
            (the Runner replaces classes and palette with the dataset's ``metainfo``).
        alpha (float): weight of the mask colour over the image, in [0, 1]; 1.0 draws flat colour maps.
            Default 0.7.
        scale (int, optional): integer upscaling factor of every panel. Default: the smallest factor that
            makes the image's short side at least ``min_size`` (1 for images already that large).
        min_size (int): see ``scale``. Default 256.
        ignore_index (int, optional): a label drawn grey, besides every label outside
            ``[0, num_classes)``. Default: ``dataset_meta['ignore_index']`` if the metainfo has one.
        legend_all_max (int): list every class in the legend when there are at most this many; otherwise
            only those present in the ground truth or the prediction. Default 12.
        font_size (int, optional): titles and legend. Default: from the panel width (12 to 20 px).
        outline (tuple, optional): RGB colour of the lines along the boundaries between labels (1 px on
            each side; drawn when the scale is at least 3); None: no lines. Default white.
    """
    margin = 8  # around the picture (px)
    gap = 8  # between panels (px)

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[List[Dict]] = None,
                 save_dir: Optional[str] = None,
                 classes: Optional[List] = None,
                 palette: Optional[List] = None,
                 dataset_name: Optional[str] = None,
                 alpha: float = 0.7,
                 scale: Optional[int] = None,
                 min_size: int = 256,
                 ignore_index: Optional[int] = None,
                 legend_all_max: int = 12,
                 font_size: Optional[int] = None,
                 outline: Optional[Sequence[int]] = (255, 255, 255),
                 **kwargs):
        super().__init__(name=name, image=image, vis_backends=vis_backends, save_dir=save_dir,
                         classes=classes, palette=palette, dataset_name=dataset_name, alpha=alpha, **kwargs)
        if not 0 <= alpha <= 1:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}.')
        if scale is not None and (int(scale) != scale or scale < 1):
            raise ValueError(f'scale must be a positive integer, got {scale}.')
        self.scale = None if scale is None else int(scale)
        self.min_size = int(min_size)
        self.ignore_index = ignore_index
        self.legend_all_max = int(legend_all_max)
        self.font_size = font_size
        self.outline = None if outline is None else tuple(int(v) for v in outline)
        self.layout: dict = {}

    # ---- layout helpers ---------------------------------------------------------------------------
    def scale_for(self, height: int, width: int) -> int:
        """The upscaling factor used for an image of this size."""
        if self.scale is not None:
            return self.scale
        return max(1, math.ceil(self.min_size / max(1, min(height, width))))

    def _ignore_index(self) -> Optional[int]:
        if self.ignore_index is not None:
            return self.ignore_index
        return (self.dataset_meta or {}).get('ignore_index')

    def _classes_and_palette(self) -> Tuple[List[str], np.ndarray]:
        meta = self.dataset_meta or {}
        classes = [str(c) for c in (meta.get('classes') or [])]
        return classes, full_palette(meta.get('palette'), len(classes))

    # ---- drawing ----------------------------------------------------------------------------------
    def draw_panels(self, image: np.ndarray, gt: Optional[np.ndarray] = None,
                    pred: Optional[np.ndarray] = None) -> np.ndarray:
        """The picture as an (H, W, 3) uint8 RGB array: image [| ground truth] [| prediction] + legend.

        ``gt`` and ``pred`` are (H, W) label maps (any integer dtype; resized nearest to the image if
        their size differs).
        """
        classes, palette = self._classes_and_palette()
        num_classes = len(classes)
        ignore_index = self._ignore_index()
        image = _to_rgb8(image)
        h, w = image.shape[:2]
        s = self.scale_for(h, w)

        panels = [('image', image, None)]
        present = set()
        any_ignored = False
        for title, labels in (('ground truth', gt), ('prediction', pred)):
            if labels is None:
                continue
            labels = _resize_nearest(np.asarray(labels).astype(np.int64), (h, w))
            valid = valid_labels(labels, num_classes, ignore_index)
            present.update(np.unique(labels[valid]).tolist())
            any_ignored |= bool((~valid).any())
            colours = label_colours(labels, palette, ignore_index).astype(np.float32)
            blended = image.astype(np.float32) * (1 - self.alpha) + colours * self.alpha
            panels.append((title, blended.round().clip(0, 255).astype(np.uint8),
                           np.where(valid, labels, -1)))

        ph, pw = h * s, w * s
        font_size = self.font_size or int(min(20, max(12, pw // 14)))
        font = _load_font(font_size)
        m, g = self.margin, self.gap
        title_h = font_size + 8
        width = 2 * m + len(panels) * pw + (len(panels) - 1) * g

        # legend entries: (colour, name), laid out left to right, wrapped at the picture's width
        if len(panels) > 1:
            ids = range(num_classes) if num_classes <= self.legend_all_max else sorted(present)
            entries = [(tuple(int(v) for v in palette[i]), self._short(classes[i])) for i in ids]
            if any_ignored:
                entries.append((IGNORE_COLOUR, 'ignored'))
        else:
            entries = []
        probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
        sw = font_size  # swatch side
        row_h = font_size + 8
        rows, x = [[]], m
        for colour, text in entries:
            item_w = sw + 6 + _text_size(probe, text, font)[0] + 16
            if rows[-1] and x + item_w > width - m:
                rows.append([])
                x = m
            rows[-1].append((x, colour, text))
            x += item_w
        legend_h = (len(rows) * row_h + m) if entries else 0

        height = m + title_h + ph + legend_h + m
        canvas = Image.new('RGB', (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        top = m + title_h
        # where things went (x, y, width, height), for tests and callers that crop
        self.layout = dict(scale=s, panels={}, legend=[text for _, text in entries],
                           legend_box=(0, top + ph, width, height - top - ph))
        for k, (title, panel, labels) in enumerate(panels):
            left = m + k * (pw + g)
            self.layout['panels'][title] = (left, top, pw, ph)
            big = np.repeat(np.repeat(panel, s, axis=0), s, axis=1)
            if labels is not None and self.outline is not None and s >= 3:
                big = self._outline(big, np.repeat(np.repeat(labels, s, axis=0), s, axis=1))
            canvas.paste(Image.fromarray(big), (left, top))
            tw, _ = _text_size(draw, title, font)
            draw.text((left + (pw - tw) // 2, m), title, fill=(0, 0, 0), font=font)
        y = top + ph + m
        for row in rows:
            for x, colour, text in row:
                draw.rectangle([x, y + 2, x + sw - 1, y + 2 + sw - 1], fill=colour, outline=(0, 0, 0))
                draw.text((x + sw + 6, y + 2), text, fill=(0, 0, 0), font=font)
            y += row_h
        return np.asarray(canvas)

    def _outline(self, big: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Lines (``outline`` colour) along every boundary between labels, 1 px on each side."""
        edge = np.zeros(labels.shape, bool)
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        edge[1:] |= labels[1:] != labels[:-1]
        edge[:-1] |= labels[:-1] != labels[1:]
        big = big.copy()
        big[edge] = self.outline
        return big

    @staticmethod
    def _short(name: str, limit: int = 24) -> str:
        return name if len(name) <= limit else name[:limit - 1] + '\u2026'

    @staticmethod
    def _labels(pixel_data) -> np.ndarray:
        data = pixel_data.data if hasattr(pixel_data, 'data') else pixel_data['data']
        if hasattr(data, 'cpu'):
            data = data.cpu().numpy()
        data = np.asarray(data)
        return data[0] if data.ndim == 3 else data

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: Optional[bool] = True) -> np.ndarray:
        """Draw image | ground truth | prediction and save it to the backends (or ``out_file``).

        Same signature as ``SegLocalVisualizer.add_datasample`` (``with_labels`` is accepted and unused:
        the legend replaces per-object labels). Returns the picture (RGB).
        """
        gt = pred = None
        if data_sample is not None:
            if draw_gt and 'gt_sem_seg' in data_sample:
                gt = self._labels(data_sample.gt_sem_seg)
            if draw_pred and 'pred_sem_seg' in data_sample:
                pred = self._labels(data_sample.pred_sem_seg)
        drawn = self.draw_panels(image, gt, pred)
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)
        return drawn
