"""Time and peak memory of DiGSeg inference against the vocabulary size; a table, a JSON and a plot.

    python tools/benchmark.py CONFIG [--checkpoint CKPT] [--vocab-sizes 19 150 847] [--image-size 640 853]
        [--presets 1x1 4x2] [--topk 50] [--device cuda] [--out-dir work_dirs/benchmark]

With ``--table4``: the paper's ensemble x steps table on the config's test split, for binary mode (full VAE
decode and learned readout) and palette mode, with mIoU, images/s and the cost against the vocabulary
(see ``tools/benchmark_table4.py``)::

    python tools/benchmark.py CONFIG --checkpoint CKPT --table4 --palette-config P --palette-checkpoint PC \
        [--baseline-config B --baseline-checkpoint BC] [--doc docs/benchmarks.md]

Every setting runs in a fresh process (build, a warm-up prediction on a small image that also caches the
text embeddings, then the timed predictions), so that peak memory is that setting's own: CUDA's peak
allocated memory on a GPU, the peak resident memory (VmHWM, reset after the warm-up) on CPU, both above
the warm model. Settings: each vocabulary size (the first N names of the ADE20K-Full list),
each preset, with full logits (``return_logits=True``, what TTA needs) and with label maps only
(``return_logits=False``: a running argmax over class chunks), and optionally top-K pruning.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from tqdm import tqdm

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Benchmark DiGSeg inference against the vocabulary size.')
    p.add_argument('config')
    p.add_argument('--checkpoint', help='weights to load (speed and memory do not depend on them)')
    p.add_argument('--vocab-sizes', type=int, nargs='+', default=None, help='default: 19 150 847 (--table4: 6 19 150)')
    p.add_argument('--image-size', type=int, nargs=2, default=[640, 853], metavar=('H', 'W'))
    p.add_argument('--presets', nargs='+', default=None,
                   help='ensemble x steps, e.g. 1x1 4x2 (default: 1x1; --table4: 1x1 1x2 4x2 8x2 20x50)')
    p.add_argument('--class-chunk-size', type=int, default=None, help='default: the config\'s')
    p.add_argument('--topk', type=int, nargs='*', default=[], help='also run with top-K class pruning')
    p.add_argument('--modes', nargs='+', default=['logits', 'labels'], choices=['logits', 'labels'])
    p.add_argument('--repeats', type=int, default=2, help='timed predictions per setting')
    p.add_argument('--device', default='cuda' if _cuda() else 'cpu')
    p.add_argument('--out-dir', default='work_dirs/benchmark')
    p.add_argument('--single', help=argparse.SUPPRESS)  # internal: one setting (JSON) in this process
    t4 = p.add_argument_group('--table4: ensemble x steps x modes on the config\'s test split')
    t4.add_argument('--table4', action='store_true')
    t4.add_argument('--palette-config')
    t4.add_argument('--palette-checkpoint')
    t4.add_argument('--baseline-config', help='an MMSeg model timed and scored beside (e.g. SegFormer-B0)')
    t4.add_argument('--baseline-checkpoint')
    t4.add_argument('--data-root', help='the test split\'s data_root (default: the config\'s)')
    t4.add_argument('--max-images', type=int, default=None, help='test images per setting (default: all)')
    t4.add_argument('--slow-images', type=int, default=12, help='test images for the 20x50 row')
    t4.add_argument('--plot', help='where the plot goes (default: OUT_DIR/table4.png)')
    t4.add_argument('--doc', help='markdown file whose table4 block is replaced by the results')
    args = p.parse_args(argv)
    if args.table4 and not args.palette_config:
        p.error('--table4 needs --palette-config (and --palette-checkpoint) beside the binary CONFIG.')
    args.presets = args.presets or (['1x1', '1x2', '4x2', '8x2', '20x50'] if args.table4 else ['1x1'])
    if not args.table4:
        args.vocab_sizes = args.vocab_sizes or [19, 150, 847]
    return args


def _cuda():
    import torch
    return torch.cuda.is_available()


def _rss_mib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def run_setting(args, setting):
    """Build the model, warm it up, predict a random image ``repeats`` times: time and peak memory."""
    import torch
    from mmseg.structures import SegDataSample
    from mmseg_digseg.apis import init_digseg
    from mmseg_digseg.datasets import load_vocabulary

    test_cfg = dict(preset=setting['preset'], return_logits=setting['mode'] == 'logits',
                    topk_classes=setting['topk'])
    if args.class_chunk_size:
        test_cfg['class_chunk_size'] = args.class_chunk_size
    options = {f'model.test_cfg.{k}': v for k, v in test_cfg.items()}
    model = init_digseg(args.config, args.checkpoint, device=args.device, cfg_options=options)
    names = load_vocabulary('ade20k_847')[:setting['vocab_size']]
    cuda = args.device.startswith('cuda')

    def predict(H, W):
        image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0)).to(args.device) * 2 - 1
        meta = dict(ori_shape=(H, W), img_shape=(H, W), pad_shape=(H, W), padding_size=[0, 0, 0, 0])
        with torch.no_grad(), model.vocabulary(names):
            out = model.predict(image, [SegDataSample(metainfo=meta)])
        if cuda:
            torch.cuda.synchronize()
        return out

    predict(32, 32)  # warm-up on a small image; it also fills the text-embedding cache
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        idle = torch.cuda.memory_allocated() / 2**20
    else:
        with open('/proc/self/clear_refs', 'w') as f:  # reset the peak resident set (VmHWM) to now
            f.write('5')
        idle = _rss_mib('VmRSS')
    H, W = args.image_size
    start = time.perf_counter()
    for _ in range(args.repeats):
        predict(H, W)
    seconds = (time.perf_counter() - start) / args.repeats
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib('VmHWM')
    return dict(setting, seconds_per_image=round(seconds, 3), peak_mib_above_model=round(peak - idle, 1),
                device=torch.cuda.get_device_name() if cuda else 'cpu', image_size=[H, W],
                class_chunk_size=model.test_cfg['class_chunk_size'])


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    series = sorted({(r['preset'], r['mode'], r['topk']) for r in results}, key=str)
    for preset, mode, topk in series:
        rows = sorted((r for r in results if (r['preset'], r['mode'], r['topk']) == (preset, mode, topk)),
                      key=lambda r: r['vocab_size'])
        label = f'{preset}, {"full logits" if mode == "logits" else "labels only"}' + (f', top-{topk}' if topk else '')
        sizes = [r['vocab_size'] for r in rows]
        axes[0].plot(sizes, [r['seconds_per_image'] for r in rows], 'o-', label=label)
        axes[1].plot(sizes, [r['peak_mib_above_model'] for r in rows], 'o-', label=label)
    axes[0].set(xlabel='classes in the vocabulary', ylabel='seconds per image', title='time')
    axes[1].set(xlabel='classes in the vocabulary', ylabel='peak MiB above the idle model', title='memory')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[1].legend(fontsize=8)
    r = results[0]
    fig.suptitle(f'DiGSeg inference, {r["image_size"][0]}x{r["image_size"][1]} image, {r["device"]}')
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    if args.table4:
        sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
        import benchmark_table4
        return benchmark_table4.main(args, list(argv if argv is not None else sys.argv[1:]))
    if args.single:
        print('RESULT ' + json.dumps(run_setting(args, json.loads(args.single))))
        return
    settings = [dict(vocab_size=n, preset=p, mode=m, topk=None)
                for p in args.presets for m in args.modes for n in args.vocab_sizes]
    settings += [dict(vocab_size=n, preset=p, mode='labels', topk=k)
                 for p in args.presets for k in args.topk for n in args.vocab_sizes if k < n]
    os.makedirs(args.out_dir, exist_ok=True)
    results = []
    passthrough = list(argv if argv is not None else sys.argv[1:])
    for setting in tqdm(settings, desc='settings'):
        out = subprocess.run([sys.executable, __file__, *passthrough, '--single', json.dumps(setting)],
                             cwd=REPO_ROOT, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
        if out.returncode or not lines:
            raise RuntimeError(f'Setting {setting} failed:\n{out.stderr[-3000:]}')
        results.append(json.loads(lines[-1][len('RESULT '):]))
        r = results[-1]
        tqdm.write(f"{r['vocab_size']:>5} classes  {r['preset']:>5}  {r['mode']:>6}  top-k {str(r['topk']):>4}  "
                   f"{r['seconds_per_image']:8.2f} s/image  {r['peak_mib_above_model']:9.1f} MiB")
    with open(osp.join(args.out_dir, 'benchmark.json'), 'w') as f:
        json.dump(results, f, indent=1)
    plot(results, osp.join(args.out_dir, 'benchmark.png'))
    print(f'Wrote {args.out_dir}/benchmark.json and benchmark.png')


if __name__ == '__main__':
    main()
