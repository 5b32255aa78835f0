"""Where one DiGSeg training step spends its time: each part timed alone, the whole step, the top operators.

    python tools/analysis_tools/train_step_profile.py CONFIG [--batch-size B] [--repeats 5] [--top 6]
        [--cfg-options KEY=VALUE ...] [--out work_dirs/train_step_profile]

One training batch comes from the config's training dataloader (its pipeline and sampler), the model from
the config, as ``tools/train.py`` builds them. Each part runs alone, once to warm up and then
``--repeats`` times (mean seconds):

- ``image_encode``: the frozen VAE encoder on the batch's images (no autograd);
- ``mask_encode``: the encoder on the step's (image, class) masks (what the denoising loss, the latent
  loss and the learned readout need);
- ``unet``: the U-Net's forward and backward on the step's pairs (the single-step prediction, or the
  denoising loss);
- ``vae_decode`` (single_step only): the frozen decoder's forward and backward, which only the latents
  need: the VAE's weights get no gradient;
- ``step``: the whole of ``model.train_step`` (data preprocessing, every loss, backward, optimizer step),
  what mmengine's loop times as ``time``.

Printed: a markdown table and, per part, the operators with the most self time (torch.profiler); written:
``OUT/train_step_profile.json``. AMP configs (``AmpOptimWrapper``) are profiled with a plain
``OptimWrapper`` on CPU, where mmengine's AMP wrapper refuses to run.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the repo, for a checkout

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import mmseg_digseg  # noqa: E402,F401  (registers DiGSeg's modules)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Time the parts of one DiGSeg training step')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--batch-size', type=int, help="images per step (default: the config's)")
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per part, after one warm-up')
    parser.add_argument('--top', type=int, default=6, help='operators listed per part (0: none)')
    parser.add_argument('--out', default='work_dirs/train_step_profile', help='work dir: the JSON and the run\'s log')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def build(args):
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    cfg.work_dir = args.out  # the Runner's log and config dump go beside the JSON
    cfg.visualizer = None  # nothing is drawn
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper' and not torch.cuda.is_available():
        cfg.optim_wrapper = {k: v for k, v in cfg.optim_wrapper.items() if k not in ('dtype', 'loss_scale')}
        cfg.optim_wrapper['type'] = 'OptimWrapper'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    if model._class_names is None:  # what DiGSegVocabularyHook does before training
        model.dataset_meta = dict(runner.train_dataloader.dataset.metainfo)
    model.train()
    return model, runner.build_optim_wrapper(cfg.optim_wrapper), next(iter(runner.train_dataloader))


def step_parts(model, optim_wrapper, batch):
    """({name: a function running that part once}, the step's sizes), on the tensors of one training step."""
    data = model.data_preprocessor(batch, True)
    inputs, samples = data['inputs'], data['data_samples']
    cfg = model.train_cfg
    gt = model._pad(torch.stack([s.gt_sem_seg.data[0] for s in samples]).long(), cfg['ignore_index'])
    inputs = model._pad(inputs, 0.0)
    img_idx, cls_idx = model._sample_pairs(gt, len(model.class_names))
    masks = gt[img_idx] == cls_idx[:, None, None]
    pooled, tokens = model.text_encoder(model.class_names)
    image_latents = model.extract_feat(inputs)[img_idx]
    mask_latents = model.backbone.encode_masks(masks)
    tokens, pooled = tokens[cls_idx], pooled[cls_idx]
    head = model.decode_head

    def unet():
        if cfg['objective'] == 'single_step':
            loss = head.single_step(image_latents, tokens, pooled).float().square().mean()
        else:
            loss = head.loss_denoising(image_latents, mask_latents, tokens, pooled)['loss_denoise']
        loss.backward()

    def vae_decode():
        clean = mask_latents.detach().requires_grad_(True)
        model.backbone.decode_masks(clean).float().square().mean().backward()

    def step():
        model.train_step(batch, optim_wrapper)

    parts = dict(image_encode=lambda: model.extract_feat(inputs),
                 mask_encode=lambda: model.backbone.encode_masks(masks), unet=unet)
    if cfg['objective'] == 'single_step':
        parts['vae_decode'] = vae_decode
    parts['step'] = step
    return parts, dict(images=inputs.shape[0], pairs=len(img_idx), size=list(inputs.shape[-2:]))


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_part(fn, repeats: int) -> float:
    fn()  # warm-up
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return (time.perf_counter() - start) / repeats


def top_operators(fn, top: int) -> list:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [dict(name=e.key, self_ms=round(e.self_cpu_time_total / 1e3, 2), calls=e.count) for e in events]


def main(argv=None):
    args = parse_args(argv)
    model, optim_wrapper, batch = build(args)
    parts, shape = step_parts(model, optim_wrapper, batch)
    results = dict(config=args.config, threads=torch.get_num_threads(),
                   device='cuda' if torch.cuda.is_available() else 'cpu', **shape, parts={})
    for name, fn in parts.items():
        results['parts'][name] = dict(seconds=time_part(fn, args.repeats),
                                      top=top_operators(fn, args.top) if args.top else [])
    print(f"\n{shape['images']} images x classes = {shape['pairs']} (image, class) pairs at {shape['size']}, "
          f"{results['device']}, {results['threads']} threads, mean of {args.repeats}:\n")
    print('| part | seconds | share of the step |\n|---|---:|---:|')
    total = results['parts']['step']['seconds']
    for name, part in results['parts'].items():
        print(f"| {name} | {part['seconds']:.4f} | {100 * part['seconds'] / total:.0f}% |")
    for name, part in results['parts'].items():
        if part['top']:
            print(f'\n{name}: ' + ', '.join(f"{op['name']} {op['self_ms']} ms ({op['calls']})" for op in part['top']))
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'train_step_profile.json'), 'w') as f:
        json.dump(results, f, indent=1)
    print(f"\nWritten: {osp.join(args.out, 'train_step_profile.json')}")
    return results


if __name__ == '__main__':
    main()
