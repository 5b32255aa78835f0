"""Where does a denoising-trained DiGSeg lose its masks? mIoU of the one-step clean estimate against the noise level,
and of sampling against the number of steps.

For each test image and every class of the vocabulary:
- ``noised t``: the true mask latent noised to timestep t (fixed noise per image), one U-Net pass, the clean latent
  the prediction implies, read out: how well the U-Net denoises at each noise level when it is given the answer's
  noisy version. t = 999 with SD's betas keeps 7 % of the signal (sqrt(alpha_bar) = 0.069), so the estimate
  x0 = (x_t - 0.998 eps) / 0.069 multiplies the epsilon error by about 15; with zero-terminal-SNR betas it keeps none.
- ``sampled N``: inference's sampling from a Gaussian start (seeded by the image), N DDIM steps of the config's
  spacing, one member.
- ``true latent``: the true mask latents read out without the U-Net (the VAE's ceiling).
Each row is scored with the VAE decode and, if the checkpoint has one, the learned readout.

Beside the argmax's mIoU, the binary view of each estimate (score > 0.5, one prompt at a time) tells a model that
cannot segment from one that cannot tell classes apart:
- ``present IoU``: IoU of a present class's mask with that class's pixels (mean over (image, class) pairs);
- ``objects IoU``: IoU of the same mask with every object pixel, whatever its class (high while present IoU is
  low: the model segments objects but does not bind them to the prompt);
- ``absent fires``: the fraction of pixels an absent class's mask turns on (0 when absent prompts stay dark).

    python tools/analysis_tools/denoising_diagnosis.py CONFIG CKPT [--max-images 30] [--out DIR]
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
import torch
from tqdm import tqdm

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [osp.dirname(TOOLS), TOOLS]  # the repo (a checkout) and tools/ (benchmark_table4)

TIMESTEPS = (100, 250, 500, 750, 999)
STEPS = (1, 2, 10, 50)


def miou(confusion: np.ndarray) -> float:
    """Mean IoU (in %) over the classes present in the ground truth or the predictions, as MMSeg's IoUMetric
    (classes absent from both give NaN and are left out)."""
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return float(np.nanmean(inter / union) * 100)


def accumulate(confusion: np.ndarray, labels: torch.Tensor, gt: torch.Tensor, ignore_index: int) -> None:
    keep = gt != ignore_index
    n = confusion.shape[0]
    confusion += np.bincount((gt[keep] * n + labels[keep]).numpy(), minlength=n * n).reshape(n, n)


def binary_view(scores: torch.Tensor, gt: torch.Tensor, ignore_index: int, background: int = 0) -> dict:
    """Sums over one image of the binary view (see the module docstring): scores (C, H, W) in [0, 1], gt (H, W)."""
    keep = gt != ignore_index
    fired = (scores > 0.5) & keep
    present = [c for c in gt[keep].unique().tolist() if c != background]
    objects = keep & (gt != background)
    sums = dict(present_iou=0.0, objects_iou=0.0, pairs=0, absent_fires=0.0, absent=0)
    for c in present:
        truth = gt == c
        sums['present_iou'] += float((fired[c] & truth).sum() / (fired[c] | truth).sum())
        sums['objects_iou'] += float((fired[c] & objects).sum() / (fired[c] | objects).sum())
        sums['pairs'] += 1
    for c in set(range(scores.shape[0])) - set(present) - {background}:
        sums['absent_fires'] += float(fired[c].sum() / keep.sum())
        sums['absent'] += 1
    return sums


def row_name(steps: int) -> str:
    return f'sampled {steps} step{"s" if steps > 1 else ""}'


@torch.no_grad()
def diagnose(model, batches, timesteps=TIMESTEPS, steps=STEPS, seed=0):
    from mmseg_digseg.models.segmentors.digseg import image_seeds
    names = model.class_names
    head, ignore_index = model.decode_head, model.train_cfg['ignore_index']
    readouts = ['vae'] + (['learned'] if model.mask_readout is not None else [])
    rows = ([('true latent', None)] + [(f'noised t={t}', t) for t in timesteps] +
            [(row_name(n), n) for n in steps])
    confusion = {(row, r): np.zeros((len(names), len(names)), np.int64) for row, _ in rows for r in readouts}
    binary = {(row, r): {} for row, _ in rows for r in readouts}
    pooled, tokens = model.text_encoder(names)
    for batch in tqdm(batches, desc='images'):
        data = model.data_preprocessor(batch, False)
        inputs, sample = data['inputs'], data['data_samples'][0]
        gt = sample.gt_sem_seg.data[0].long()
        size = inputs.shape[-2:]
        padded = model._pad(inputs, 0.0)
        image_latent = model.extract_feat(padded)
        gt_padded = model._pad(gt[None], ignore_index)[0]
        mask_latents = model.backbone.encode_masks(gt_padded[None] == torch.arange(len(names))[:, None, None])
        noise = torch.randn(mask_latents.shape[1:], generator=torch.Generator().manual_seed(seed))
        estimates = {'true latent': mask_latents}
        for t in timesteps:
            t_batch = torch.full((len(names), ), t, dtype=torch.long)
            noisy = head.train_scheduler.add_noise(mask_latents, noise.expand_as(mask_latents), t_batch)
            prediction = head(noisy, image_latent.expand(len(names), -1, -1, -1), t_batch, tokens, pooled)
            estimates[f'noised t={t}'] = head.predicted_clean(prediction.float(), noisy, t_batch)
        [seed] = image_seeds(inputs, [sample.metainfo], model.test_cfg['seed'])
        start = torch.randn(image_latent.shape, generator=torch.Generator().manual_seed(seed))
        for n in steps:  # inference's sampling: one member, a Gaussian start seeded by the image, trailing DDIM
            estimates[row_name(n)] = head.sample(image_latent.expand(len(names), -1, -1, -1), tokens, pooled,
                                                 start.expand(len(names), -1, -1, -1), n)
        for readout in readouts:
            model.test_cfg['mask_readout'] = readout
            for row, latents in estimates.items():
                scores = model.read_masks(latents)[:, :size[0], :size[1]]
                accumulate(confusion[(row, readout)], scores.argmax(0), gt, ignore_index)
                for key, value in binary_view(scores, gt, ignore_index).items():
                    binary[(row, readout)][key] = binary[(row, readout)].get(key, 0) + value
    results = {}
    for row, _ in rows:
        results[row] = {}
        for r in readouts:
            sums = binary[(row, r)]
            results[row][r] = dict(
                mIoU=miou(confusion[(row, r)]),
                present_iou=100 * sums['present_iou'] / max(sums['pairs'], 1),
                objects_iou=100 * sums['objects_iou'] / max(sums['pairs'], 1),
                absent_fires=100 * sums['absent_fires'] / max(sums['absent'], 1))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--max-images', type=int, default=30)
    parser.add_argument('--timesteps', type=int, nargs='+', default=list(TIMESTEPS))
    parser.add_argument('--steps', type=int, nargs='+', default=list(STEPS))
    parser.add_argument('--out', default=None, help='folder for diagnosis.json (default: print only)')
    args = parser.parse_args()

    from benchmark_table4 import test_data
    from mmseg_digseg.apis import init_digseg
    model = init_digseg(args.config, args.checkpoint, device='cpu')
    batches, _ = test_data(model.cfg, args.max_images)
    results = diagnose(model, batches, args.timesteps, args.steps)
    readouts = list(next(iter(results.values())))
    columns = [(r, key) for r in readouts for key in ('mIoU', 'present_iou', 'objects_iou', 'absent_fires')]
    print('| estimate | ' + ' | '.join(f'{key}, {r}' for r, key in columns) + ' |')
    print('|---|' + '---|' * len(columns))
    for row, scores in results.items():
        print(f'| {row} | ' + ' | '.join(f'{scores[r][key]:.2f}' for r, key in columns) + ' |')
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(osp.join(args.out, 'diagnosis.json'), 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint, images=len(batches), mIoU=results), f,
                      indent=2)


if __name__ == '__main__':
    main()
