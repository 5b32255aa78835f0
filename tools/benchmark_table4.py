"""The paper's Table 4 (ensemble size x steps) at tiny scale, for each inference mode: ``tools/benchmark.py --table4``.

For binary mode with the full VAE decode (the paper's), binary mode with the learned readout and palette mode,
and each preset (ensemble x steps): mIoU on the config's test split and images per second (the model's
``test_step`` only, batch 1, after a warm-up, median over the images); the per-image time against the vocabulary size (the first N
names of ADE20K-Full, preset 1x1); each time as a ratio to the floor, one VAE encode + one U-Net pass; the
FLOPs of one mask readout against one full decode, at the tiny model's and at SD 2.1-base's size (counted on
the meta device: no weights, no compute); an MMSeg baseline's images/s and mIoU beside them. Writes
``table4.json``, a plot, and the tables into ``--doc`` between ``<!-- table4:begin -->`` and
``<!-- table4:end -->`` (text outside the markers is kept).
"""
import json
import os
import os.path as osp
import platform
import re
import statistics
import sys
import time

import torch
from tqdm import tqdm

MODES = {  # name -> (which config, test_cfg overrides)
    'binary, VAE decode': ('binary', dict(mask_readout='vae')),
    'binary, learned readout': ('binary', dict(mask_readout='learned')),
    'palette': ('palette', dict()),
}
HALF = ('binary, VAE decode, bf16', ('binary', dict(mask_readout='vae', precision='bf16')))  # preset 1x1 only
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SD21_FILES = osp.join(REPO_ROOT, 'tests/fixtures/sd21_base')  # SD 2.1-base's published config files
SD_MODEL_CONFIG = osp.join(REPO_ROOT, 'configs/_base_/models/digseg_sd21_vitl.py')
BEGIN, END = '<!-- table4:begin -->', '<!-- table4:end -->'


def build(config, checkpoint, test_cfg, device='cpu'):
    from mmseg_digseg.apis import init_digseg
    return init_digseg(config, checkpoint, device=device,
                       cfg_options={f'model.test_cfg.{k}': v for k, v in test_cfg.items()})


def test_data(cfg, max_images):
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    return [pseudo_collate([dataset[i]]) for i in range(count)], dataset.metainfo


def evaluate(model, batches, metainfo):
    """mIoU (MMSeg's IoUMetric) and seconds per image of ``model.test_step`` (the median over the images,
    after one warm-up step: a shared or throttled CPU slows some steps down, not the median)."""
    from mmseg.evaluation import IoUMetric
    metric = IoUMetric(prefix='test')
    metric.dataset_meta = metainfo
    with torch.no_grad():
        model.test_step(batches[0])
        times = []
        for batch in batches:
            start = time.perf_counter()
            outputs = model.test_step(batch)
            times.append(time.perf_counter() - start)
            metric.process(batch, [output.to_dict() for output in outputs])  # as mmengine's Evaluator
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # IoUMetric prints its per-class table
    try:
        miou = metric.compute_metrics(metric.results)['mIoU']
    finally:
        logger.setLevel(level)
    return float(miou), statistics.median(times)


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def floor_seconds(model, image, repeats):
    """One VAE encode of the image and one U-Net pass (batch 1): the least any DiGSeg inference costs."""
    pooled, tokens = model.text_encoder(model.class_names[:1])
    head = model.decode_head
    if hasattr(model, 'vocabulary_prompt'):  # palette mode's tokens: one per class
        tokens, pooled = model.vocabulary_prompt(pooled, model.colours(1)[None])

    def run():
        latent = model.extract_feat(image)
        t = torch.full((1, ), head.num_train_timesteps - 1, dtype=torch.long)
        head(torch.zeros_like(latent[:, :head.latent_channels]), latent, t, tokens[:1], pooled[:1])

    return median_seconds(run, repeats)


@torch.no_grad()
def seconds_per_image(model, image, names, repeats):
    from mmseg.structures import SegDataSample
    H, W = image.shape[-2:]
    meta = dict(ori_shape=(H, W), img_shape=(H, W), pad_shape=(H, W), padding_size=[0, 0, 0, 0])
    with model.vocabulary(names):
        return median_seconds(lambda: model.predict(image, [SegDataSample(metainfo=meta)]), repeats)


def vocabulary_rows(mode, model, image, names, sizes, repeats):
    """Seconds per image (preset 1x1) for the first N ``names``, each N of ``sizes``. A vocabulary that palette
    mode refuses (its colours too close for the VAE) gets ``seconds=None`` and the reason, not a failed run."""
    from mmseg_digseg.models.segmentors.digseg_palette import PaletteCapacityError
    rows = []
    for n in sizes:
        try:
            rows.append(dict(mode=mode, classes=n, seconds=seconds_per_image(model, image, names[:n], repeats)))
        except PaletteCapacityError as error:
            rows.append(dict(mode=mode, classes=n, seconds=None, refused=str(error).split('. Use')[0]))
            tqdm.write(f'{mode:>24} {n:>6} classes: refused ({error})')
    return rows


def readout_flops(tiny_model, sd_readout_cfg):
    """FLOPs of one mask readout: the full VAE decode against the learned readout, tiny and SD 2.1-base."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode
    from mmseg.registry import MODELS

    def count(fn, *args):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(*args)
        return counter.get_total_flops()

    f = tiny_model.backbone.downsample_factor
    latent = torch.zeros(1, tiny_model.backbone.latent_channels, 64 // f, 64 // f)
    rows = [dict(model='DiGSeg-tiny (64x64)', decode=count(tiny_model.backbone.decode_masks, latent),
                 readout=count(tiny_model.mask_readout, latent))]
    with torch.device('meta'):
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(osp.join(SD21_FILES, 'vae')))
        readout = MODELS.build(dict(sd_readout_cfg, latent_channels=4, upsample_factor=8))
        latent = torch.zeros(1, 4, 64, 64)
        rows.append(dict(model='SD 2.1-base (512x512)', decode=count(lambda z: vae.decode(z).sample, latent),
                         readout=count(readout, latent)))
    return rows


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode in MODES:
        rows = [r for r in results['table4'] if r['mode'] == mode]
        axes[0].plot([r['images_per_s'] for r in rows], [r['mIoU'] for r in rows], 'o-', label=mode)
        for r in rows:
            axes[0].annotate(r['preset'], (r['images_per_s'], r['mIoU']), fontsize=7, xytext=(3, 3),
                             textcoords='offset points')
        rows = [r for r in results['vocabulary'] if r['mode'] == mode and r['seconds'] is not None]
        axes[1].plot([r['classes'] for r in rows], [r['seconds'] for r in rows], 'o-', label=mode)
    base = results.get('baseline')
    if base:
        axes[0].plot([base['images_per_s']], [base['mIoU']], 'k*', markersize=10, label=base['name'])
    axes[0].set(xscale='log', xlabel='images / s (log)', ylabel='mIoU', title='ensemble x steps (Table 4)')
    axes[1].axhline(results['floor_seconds'], color='grey', ls='--', label='floor: 1 encode + 1 U-Net pass')
    axes[1].set(xscale='log', yscale='log', xlabel='classes in the vocabulary', ylabel='seconds per image',
                title='preset 1x1 against the vocabulary')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"DiGSeg-tiny inference, {results['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results, command, plot_path, doc_path):
    floor = results['floor_seconds']
    lines = [f'Measured by `{command}` on {results["machine"]}, {results["date"]}; '
             f'{results["num_images"]} test images ({results["slow_images"]} for the 20x50 row), batch 1, median seconds '
             'per image. '
             f'Floor: one VAE encode + one U-Net pass = {floor * 1000:.1f} ms per image.', '',
             '| preset | ' + ' | '.join(f'{m}: mIoU | img/s | x floor' for m in MODES) + ' |',
             '|---|' + '---|---|---|' * len(MODES)]
    for preset in results['presets']:
        cells = []
        for mode in MODES:
            r = next(r for r in results['table4'] if r['mode'] == mode and r['preset'] == preset)
            cells.append(f"{r['mIoU']:.2f} | {1 / r['seconds']:.3g} | {r['seconds'] / floor:.1f}")
        lines.append(f'| {preset} | ' + ' | '.join(cells) + ' |')
    half, full = results['half'], next(r for r in results['table4'] if r['mode'] == 'binary, VAE decode'
                                       and r['preset'] == '1x1')
    lines += ['', f"Half precision (`test_cfg.precision='bf16'`, autocast), binary mode with the VAE decode, 1x1: "
              f"mIoU {half['mIoU']:.2f} (fp32 {full['mIoU']:.2f}), {half['images_per_s']:.1f} images/s "
              f"(fp32 {full['images_per_s']:.1f})."]
    base = results.get('baseline')
    if base:
        lines += ['', f"{base['name']} on the same images: mIoU {base['mIoU']:.2f}, {base['images_per_s']:.1f} "
                  f"images/s ({base['seconds'] / floor:.1f}x the floor)."]
    sizes = sorted({r['classes'] for r in results['vocabulary']})
    lines += ['', 'Seconds per image (preset 1x1) against the vocabulary, and as a ratio to the floor:', '',
              '| mode | ' + ' | '.join(f'{n} classes' for n in sizes) + f' | {sizes[-1]} / {sizes[0]} |',
              '|---|' + '---|' * (len(sizes) + 1)]
    refusals = []
    for mode in MODES:
        rows = {r['classes']: r['seconds'] for r in results['vocabulary'] if r['mode'] == mode}
        measured = [n for n in sizes if rows[n] is not None]
        cells = [f'{rows[n] * 1000:.1f} ms ({rows[n] / floor:.1f}x)' if rows[n] is not None else 'refused'
                 for n in sizes]
        ratio = f'{rows[measured[-1]] / rows[measured[0]]:.2f}x' if measured else '-'
        if measured and measured[-1] != sizes[-1]:
            ratio += f' ({measured[-1]} / {measured[0]})'
        lines.append(f'| {mode} | ' + ' | '.join(cells) + f' | {ratio} |')
        refusals += [f"{mode}: {r['refused']}." for r in results['vocabulary']
                     if r['mode'] == mode and r['seconds'] is None]
    if refusals:
        lines += ['', 'Refused: ' + ' '.join(refusals)]
    lines += ['', 'FLOPs of one class\'s mask readout (counted by `torch.utils.flop_counter`):', '',
              '| model | full VAE decode | learned readout | ratio |', '|---|---|---|---|']
    for r in results['flops']:
        lines.append(f"| {r['model']} | {r['decode'] / 1e9:.3f} GFLOP | {r['readout'] / 1e9:.3f} GFLOP | "
                     f"{r['decode'] / r['readout']:.0f}x |")
    lines += ['', f'![Table 4 at tiny scale]({osp.relpath(plot_path, osp.dirname(doc_path))})']
    return '\n'.join(lines)


def write_doc(doc_path, block):
    text = open(doc_path).read() if osp.isfile(doc_path) else '# Benchmarks\n\n'
    block = f'{BEGIN}\n{block}\n{END}'
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + '.*?' + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    with open(doc_path, 'w') as f:
        f.write(text)


def main(args, argv):
    from mmengine.config import Config
    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmseg.utils import register_all_modules
    from mmseg_digseg.datasets import load_vocabulary
    register_all_modules(init_default_scope=True)
    configs = dict(binary=(args.config, args.checkpoint), palette=(args.palette_config, args.palette_checkpoint))
    cfg = Config.fromfile(args.config)
    if args.data_root:
        cfg.test_dataloader.dataset.data_root = args.data_root
    batches, metainfo = test_data(cfg, args.max_images)
    results = dict(presets=args.presets, table4=[], vocabulary=[], num_images=len(batches),
                   slow_images=min(args.slow_images, len(batches)), date=time.strftime('%Y-%m-%d'),
                   machine=f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads'
                   + (f', {torch.cuda.get_device_name()}' if args.device.startswith('cuda') else ', CPU'))
    vocab_sizes = args.vocab_sizes or [6, 19, 150]
    names = load_vocabulary('ade20k_847')
    settings = [(mode, preset) for mode in MODES for preset in args.presets]
    for mode, preset in tqdm(settings, desc='modes x presets'):
        which, test_cfg = MODES[mode]
        model = build(*configs[which], dict(test_cfg, preset=preset), args.device)
        use = batches[:args.slow_images] if preset == '20x50' else batches
        miou, seconds = evaluate(model, use, metainfo)
        results['table4'].append(dict(mode=mode, preset=preset, mIoU=round(miou, 2), seconds=seconds,
                                      images_per_s=round(1 / seconds, 4), images=len(use)))
        tqdm.write(f'{mode:>24} {preset:>6}: mIoU {miou:6.2f}  {1 / seconds:8.2f} images/s')
        if preset == '1x1':
            image = model.data_preprocessor(batches[0], False)['inputs']
            if mode == 'binary, VAE decode':
                results['floor_seconds'] = floor_seconds(model, image, args.repeats * 5)
                results['flops'] = readout_flops(model, Config.fromfile(SD_MODEL_CONFIG).model.mask_readout)
            results['vocabulary'] += vocabulary_rows(mode, model, image, names, vocab_sizes, args.repeats)
    name, (which, test_cfg) = HALF
    miou, seconds = evaluate(build(*configs[which], dict(test_cfg, preset='1x1'), args.device), batches, metainfo)
    results['half'] = dict(mode=name, preset='1x1', mIoU=round(miou, 2), seconds=seconds,
                           images_per_s=round(1 / seconds, 2))
    if args.baseline_config:
        from mmseg.apis import init_model
        base = init_model(args.baseline_config, args.baseline_checkpoint, device=args.device)
        miou, seconds = evaluate(base, batches, metainfo)
        results['baseline'] = dict(name=osp.splitext(osp.basename(args.baseline_config))[0], mIoU=round(miou, 2),
                                   seconds=seconds, images_per_s=round(1 / seconds, 2))
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'table4.json'), 'w') as f:
        json.dump(results, f, indent=1)
    plot_path = args.plot or osp.join(args.out_dir, 'table4.png')
    plot(results, plot_path)
    command = 'python tools/benchmark.py ' + ' '.join(argv)
    block = markdown(results, command, plot_path, args.doc or osp.join(args.out_dir, 'benchmarks.md'))
    print(block)
    if args.doc:
        write_doc(args.doc, block)
    print(f'Wrote {args.out_dir}/table4.json, {plot_path}' + (f' and {args.doc}' if args.doc else ''), file=sys.stderr)
    return results
