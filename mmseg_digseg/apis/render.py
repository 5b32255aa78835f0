"""Pictures of a ``segment`` result: the label overlay with a legend, and one colour-mapped score map per prompt.

Shared by tools/infer.py, demo/image_demo.py and demo/gradio_app.py, so all three show the same thing.
"""
import io
from typing import List, Sequence

import matplotlib

matplotlib.use('Agg')  # headless: figures are rendered to arrays, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 RGB colours, tab20 repeated."""
    return (plt.get_cmap('tab20')(np.arange(num_classes) % 20)[:, :3] * 255).astype(np.uint8)


def render_overlay(rgb: np.ndarray, labels: np.ndarray, names: Sequence[str], opacity: float = 0.5) -> np.ndarray:
    """The image (H, W, 3 uint8 RGB) blended with its label map (H, W), and a legend of the labels present,
    as one RGB uint8 array (larger than the image: the legend sits on the right)."""
    colours = class_colours(len(names))
    overlay = (rgb * (1 - opacity) + colours[labels] * opacity).astype(np.uint8)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(overlay)
    ax.axis('off')
    ax.legend(handles=[Patch(color=colours[i] / 255, label=names[i]) for i in np.unique(labels)],
              loc='upper left', bbox_to_anchor=(1, 1), fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', bbox_inches='tight', dpi=100)
    plt.close(fig)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert('RGB'))


def render_score_maps(scores: np.ndarray) -> List[np.ndarray]:
    """Scores (C, H, W) in [0, 1] -> one viridis RGB uint8 image per class (0 dark blue, 1 yellow)."""
    cmap = plt.get_cmap('viridis')
    return [(cmap(np.clip(s, 0, 1))[..., :3] * 255).round().astype(np.uint8) for s in scores]


def file_safe(name: str) -> str:
    """A prompt's first synonym as a file-name part: 'sofa, couch' -> 'sofa'."""
    return ''.join(c if c.isalnum() else '_' for c in name.split(',')[0].strip())


def render_result(model, image: np.ndarray, result, names: Sequence[str], opacity: float = 0.5) -> tuple:
    """One ``segment`` result of ``image`` (any depth/channels, BGR) -> (overlay with legend, score-map images
    (none when the result holds labels only), names of the labels present)."""
    from ..datasets import to_bgr8
    from .inference import result_scores
    rgb = to_bgr8(image)[0][..., ::-1]
    labels = result.pred_sem_seg.data[0].long().cpu().numpy()  # one class: MMSeg's threshold gives floats
    # one class: MMSeg's binary label map, 1 where its score passes decode_head.threshold, 0 elsewhere
    legend = [f'not {names[0]}', names[0]] if len(names) == 1 else list(names)
    overlay = render_overlay(rgb, labels, legend, opacity)
    maps = render_score_maps(result_scores(model, result).cpu().numpy()) if 'seg_logits' in result else []
    return overlay, maps, [legend[i] for i in np.unique(labels)]
