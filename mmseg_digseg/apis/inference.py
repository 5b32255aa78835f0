"""Python API: load a DiGSeg checkpoint and segment images with any vocabulary."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose

from mmseg.apis import init_model
from mmseg.structures import SegDataSample
from ..models.segmentors.digseg import scores_to_logits

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

    Label ``i`` of ``pred_sem_seg`` is ``prompts[i]`` (one prompt: MMSeg's binary map, 1 where the prompt's
    score passes ``decode_head.threshold``, 0 elsewhere). ``result_scores(model, result)`` are the
    per-prompt scores in [0, 1] (binary mode: each prompt's sigmoid of ``seg_logits``; palette mode: a
    softmax over prompts). With one prompt MMSeg has already applied the sigmoid and ``seg_logits`` holds
    the probability: do not apply ``model.logits_to_scores`` to it yourself. ``seg_logits`` is absent when
    ``model.test_cfg['return_logits']`` is False, as in the A-847 and PC-459 configs, which keep memory
    flat in the vocabulary. ``prompts`` may also name a shipped vocabulary
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


def result_scores(model, result: SegDataSample) -> torch.Tensor:
    """Per-prompt scores (C, H, W) in [0, 1] of one ``segment`` result.

    MMSeg's ``postprocess_result`` keeps the logits for several classes but, for one class, stores
    ``sigmoid(logits)`` in ``seg_logits`` (it thresholds that probability). Taking the model's
    ``logits_to_scores`` of that would apply the sigmoid twice (scores squeezed into [0.5, 0.73]), so a
    one-prompt result is turned back into logits first.
    """
    if 'seg_logits' not in result:
        raise ValueError('This result has no seg_logits: the model ran with test_cfg.return_logits=False '
                         '(labels only). Set model.test_cfg["return_logits"] = True to get score maps.')
    logits = result.seg_logits.data
    if logits.shape[0] == 1:
        logits = scores_to_logits(logits, eps=1e-7)
    return model.logits_to_scores(logits.float())
