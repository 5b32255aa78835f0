"""Python API: load a DiGSeg checkpoint and segment images with any vocabulary."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose

from mmseg.apis import init_model
from mmseg.structures import SegDataSample

ImageType = Union[str, np.ndarray]


def init_digseg(config, checkpoint: Optional[str] = None, device: str = 'cpu', cfg_options: Optional[dict] = None):
    """``mmseg.apis.init_model`` for DiGSeg; the checkpoint's ``dataset_meta`` gives the default vocabulary."""
    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules before building)
    return init_model(config, checkpoint, device=device, cfg_options=cfg_options)


def _test_pipeline(cfg) -> Compose:
    # images arrive as paths or arrays, without annotations; LoadImageAsBGR8 takes both and converts
    # grayscale / RGBA / 16-bit input.
    steps = [dict(t) for t in cfg.test_pipeline
             if t['type'] not in ('LoadAnnotations', 'LoadWideAnnotations', 'LoadImageFromFile')]
    if steps[0]['type'] != 'LoadImageAsBGR8':
        steps.insert(0, dict(type='LoadImageAsBGR8'))
    return Compose(steps)


def segment(model, images: Union[ImageType, Sequence[ImageType]],
            prompts: Optional[Sequence[str]] = None) -> Union[SegDataSample, List[SegDataSample]]:
    """Segment image(s) (paths or HxWxC BGR arrays) with ``prompts`` as the vocabulary.

    Label ``i`` of ``pred_sem_seg`` is ``prompts[i]``; ``model.logits_to_scores(seg_logits.data)`` are the
    per-prompt scores (binary mode: ``seg_logits.data.sigmoid()``; palette mode: a softmax over prompts).
    ``seg_logits`` is absent when ``model.test_cfg['return_logits']`` is False, as in the A-847 and PC-459
    configs, which keep memory flat in the vocabulary. ``prompts`` may also name a shipped vocabulary
    (``'ade20k_150'``) or a .txt file. Without ``prompts`` the model's own vocabulary is used.
    """
    batch = isinstance(images, (list, tuple))
    pipeline = _test_pipeline(model.cfg)
    data = dict(inputs=[], data_samples=[])
    for image in images if batch else [images]:
        item = pipeline(dict(img=image, img_path=None) if isinstance(image, np.ndarray) else dict(img_path=image))
        data['inputs'].append(item['inputs'])
        data['data_samples'].append(item['data_samples'])
    with torch.no_grad(), model.vocabulary(prompts):
        results = model.test_step(data)
    return results if batch else results[0]
