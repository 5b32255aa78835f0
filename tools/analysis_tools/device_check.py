"""One short run on a machine with one CUDA GPU and no internet: what docs/zoo.md computes, measured.

    python tools/analysis_tools/device_check.py --out DIR [--budget-s 420]
    python tools/analysis_tools/device_check.py --out DIR --tiny      # CPU, the embedded default (the tests')

The paper config (configs/digseg/digseg_vitl_ade20k-512.py) is built with SD 2.1-base's U-Net and VAE and
the ViT-L/14 text tower at full size, random weights (``random_weights.py``: nothing to download), and
measured on synthetic 512x512 batches:

- training (``model.train_step`` with the config's ``AmpOptimWrapper``, bf16, AdamW, gradient accumulation
  and clipping as configured), 1 and 2 images per GPU, U-Net gradient checkpointing on and off: seconds per
  iteration and peak CUDA memory (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
  with ``torch.cuda.synchronize`` around every timing); warm-up iterations first, so AdamW's states exist;
- inference (``model.test_step``, 1x1, 150 classes, one 512x512 image): images/s and peak memory with the
  VAE decode, the learned readout and palette mode in bf16, and the VAE decode in fp32;
- next to them, the computed tables (``digseg_memory.py``, ``digseg_inference_memory.py``), run at the same
  settings in a separate process (their norm and scheduler patches stay out of the measured one), on the
  CPU while the GPU measures.

Every row is written to ``DIR/device_check.json`` and ``DIR/device_check.md`` as soon as it is measured. The
run stops cleanly when ``--budget-s`` runs short: a row that would not fit is skipped, one that overruns is
interrupted; what was measured is kept. ``--tiny`` runs the same code on the CPU with the tiny config
(plain ``OptimWrapper`` in fp32, as mmengine's AMP wrapper refuses CPU-only machines; no CUDA memory).
"""
import argparse
import contextlib
import gc
import json
import logging
import math
import os
import os.path as osp
import platform
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the repo, for a checkout
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg_vitl_ade20k-512.py')
TINY_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny_synth-shapes-64.py')
GiB = 2**30
# (images per GPU, U-Net gradient checkpointing): the shipped setting first
TRAIN_ROWS = [(2, True), (2, False), (1, True), (1, False)]
# (mode, precision, mask readout)
INFER_ROWS = [('binary', 'bf16', 'vae'), ('binary', 'bf16', 'learned'), ('binary', 'fp32', 'vae'),
              ('palette', 'bf16', 'vae')]
PAIRS_PER_IMAGE = 4  # the paper config's train_cfg: 3 present + 1 absent class per image


class OutOfTime(Exception):
    """The time budget ran out while a row was being measured."""


class Budget:
    """Wall-clock budget: ``fits(s)`` before starting work, and ``guard()`` interrupts work past the deadline."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, seconds: float) -> bool:
        return self.left() > seconds

    @contextlib.contextmanager
    def guard(self):
        """Raise ``OutOfTime`` in the block at the deadline (SIGALRM: between Python bytecodes, so a running
        CUDA kernel finishes first)."""
        def stop(signum, frame):
            raise OutOfTime(f'time budget reached ({self.left():.0f} s left)')

        left = self.left()
        if left <= 0:
            raise OutOfTime('time budget reached before the row started')
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class Device:
    """CUDA memory and timing where there is a GPU; wall time only on the CPU."""

    def __init__(self, name: str):
        self.type = name
        self.cuda = name == 'cuda'

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def allocated_gib(self):
        return torch.cuda.memory_allocated() / GiB if self.cuda else None

    def peak_gib(self):
        self.sync()
        return torch.cuda.max_memory_allocated() / GiB if self.cuda else None

    def reserved_peak_gib(self):
        return torch.cuda.max_memory_reserved() / GiB if self.cuda else None

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def out_of_memory(self):
        return torch.cuda.OutOfMemoryError if self.cuda else MemoryError


class Report:
    """The measurements so far, rewritten to OUT/device_check.{json,md} after every row."""

    def __init__(self, out: str, meta: dict):
        self.out, self.data = out, dict(meta=meta, training=[], inference=[], computed={}, notes=[])
        os.makedirs(out, exist_ok=True)

    def add(self, kind: str, row: dict):
        self.data[kind].append(row)
        self.write()

    def write(self):
        with open(osp.join(self.out, 'device_check.json'), 'w') as f:
            json.dump(self.data, f, indent=1)
        with open(osp.join(self.out, 'device_check.md'), 'w') as f:
            f.write(markdown(self.data))


def _num(x, fmt='.2f'):
    return '-' if x is None else format(x, fmt)


def markdown(data: dict) -> str:
    meta, computed = data['meta'], data['computed']
    lines = [f"# DiGSeg device check: {meta['config']}", '',
             f"{meta['device']}; torch {meta['torch']}; {'tiny (CPU smoke run)' if meta['tiny'] else 'full size'}; "
             f"budget {meta['budget_s']} s, used {_num(meta.get('elapsed_s'), '.0f')} s", '',
             '## Training (per GPU)', '',
             '| images/GPU | grad. ckpt | s / iteration | peak allocated GiB | peak reserved GiB | computed tensor '
             'peak GiB | status |', '|---|---|---|---|---|---|---|']
    for r in data['training']:
        c = computed.get(f"train_{r['images']}_{'on' if r['checkpointing'] else 'off'}", {})
        lines.append(f"| {r['images']} | {'on' if r['checkpointing'] else 'off'} | {_num(r.get('step_s'), '.3f')} | "
                     f"{_num(r.get('peak_gib'))} | {_num(r.get('reserved_gib'))} | {_num(c.get('tensor_peak_gib'))} | "
                     f"{r['status']} |")
    size = f"{meta['size']}x{meta['size']}"
    lines += ['', f"## Inference (1x1, {meta.get('num_classes', '-')} classes, one {size} image)", '',
              '| mode | precision | mask readout | images/s | peak allocated GiB | peak over weights GiB | '
              'computed peak over weights GiB | status |', '|---|---|---|---|---|---|---|---|']
    for r in data['inference']:
        c = computed.get(f"infer_{r['precision']}_{r['mask_readout']}" if r['mode'] == 'binary' else '', {})
        lines.append(f"| {r['mode']} | {r['precision']} | {r['mask_readout']} | {_num(r.get('images_per_s'), '.3f')} | "
                     f"{_num(r.get('peak_gib'))} | {_num(r.get('peak_over_weights_gib'))} | "
                     f"{_num(c.get('peak_over_weights_gib'))} | {r['status']} |")
    if computed.get('status'):
        lines += ['', f"Computed tables: {computed['status']}"]
        lines += [f"- {k}: {v['error']}" for k, v in computed.items() if isinstance(v, dict) and 'error' in v]
    lines += [''] + [f'- {n}' for n in data['notes']]
    return '\n'.join(lines) + '\n'


# ---- the computed tables (run in their own process) -------------------------------------------------------
def computed_tables(tiny: bool) -> dict:
    """digseg_memory.py and digseg_inference_memory.py at the measured settings (SD 2.1-base, fake tensors);
    a row that fails records its error. ``tiny``: one row of each (the inference one with the tiny run's 6
    classes at 64 px), so that the suite's run stays short."""
    import digseg_inference_memory as infer_memory  # (patches DDIM's step for fake tensors)
    import digseg_memory as train_memory  # (patches the norms to CUDA's autocast rules)
    out = {}

    def row(key, fn):
        try:
            out[key] = fn()
        except Exception as err:  # noqa: BLE001  (kept, next to the measured row)
            out[key] = dict(error=f'{type(err).__name__}: {err}'[:300])

    def train(images, ckpt):
        r = train_memory.measure('ViT-L-14', images, PAIRS_PER_IMAGE, ckpt)
        return dict(weights_gib=r['weights_gib'], tensor_peak_gib=r['weights_gib'] + r['peak_over_weights_gib'])

    def infer(classes, size, precision):
        test_cfg = dict(return_logits=True, class_chunk_size=8, precision=None if precision == 'fp32' else precision)
        weights, peak = infer_memory.measure(classes, (size, size), test_cfg, slicing=True)
        return dict(weights_gib=weights, peak_over_weights_gib=peak, classes=classes)

    for images, ckpt in TRAIN_ROWS[:1] if tiny else TRAIN_ROWS:
        row(f"train_{images}_{'on' if ckpt else 'off'}", lambda: train(images, ckpt))
    classes, size = (6, 64) if tiny else (150, 512)
    for precision in ['fp32'] if tiny else ['bf16', 'fp32']:
        row(f'infer_{precision}_vae', lambda: infer(classes, size, precision))
    return out


def start_computed(out: str, tiny: bool) -> subprocess.Popen:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')  # CPU only: the GPU is being measured
    cmd = [sys.executable, osp.abspath(__file__), '--computed-only', '--out', out] + (['--tiny'] if tiny else [])
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def collect_computed(proc: subprocess.Popen, out: str, budget: Budget) -> dict:
    try:
        proc.wait(timeout=max(budget.left(), 1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return dict(status='not finished within the time budget (killed)')
    path = osp.join(out, 'computed.json')
    if proc.returncode != 0 or not osp.isfile(path):
        return dict(status=f'failed (exit {proc.returncode}): {proc.stdout.read()[-2000:]}')
    with open(path) as f:
        return dict(json.load(f), status='done')


# ---- the measured model ------------------------------------------------------------------------------------
def build(config: str, folder: str, device: Device, palette: bool = False):
    """The config's model (paper config: SD 2.1-base + ViT-L/14, random weights) on ``device``, with the
    dataset's vocabulary, and its optimizer wrapper (plain OptimWrapper in fp32 on the CPU)."""
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import DATASETS, MODELS
    from random_weights import with_random_weights
    cfg = with_random_weights(Config.fromfile(config), folder)
    if palette:  # its losses are ce and latent (binary mode's bce / dice are refused); inference is what is measured
        objective = cfg.model.train_cfg.get('objective', 'denoising')
        cfg.model.update(type='DiGSegPalette', mask_readout=None)
        cfg.model['train_cfg'] = dict(objective=objective, loss_weights=dict(ce=1.0, latent=1.0))
    model = MODELS.build(cfg.model)
    model.dataset_meta = dict(classes=list(DATASETS.get(cfg.train_dataloader.dataset.type).METAINFO['classes']))
    if palette:  # refuses, with a ValueError, a vocabulary too large for its palette
        model.colours(len(model.class_names))
    model.to(device.type)
    optim_cfg = cfg.optim_wrapper
    if optim_cfg.get('type') == 'AmpOptimWrapper' and not device.cuda:
        optim_cfg = {k: v for k, v in optim_cfg.items() if k not in ('dtype', 'loss_scale')}
        optim_cfg['type'] = 'OptimWrapper'
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # one line per frozen parameter left out of the optimizer
    try:
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
    finally:
        logger.setLevel(level)
    return cfg, model, optim_wrapper


def synthetic_batch(images: int, size: int, num_classes: int, seed: int = 0) -> dict:
    """Images and label maps as the dataloader gives them: uint8 (3, H, W) and 6 classes in blocks per image
    (so that 3 present + 1 absent classes can be drawn), with an ignored strip (ADE20K's "other")."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(images):
        classes = torch.randperm(num_classes, generator=g)[:6]
        labels = torch.zeros(size, size, dtype=torch.long)
        for i, c in enumerate(classes):
            labels[:, i * size // 6:(i + 1) * size // 6] = c
        labels[:size // 16] = 255
        sample = SegDataSample(metainfo=dict(ori_shape=(size, size), img_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=labels[None])
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def timed(device: Device, fn, repeats: int) -> float:
    device.sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    device.sync()
    return (time.perf_counter() - start) / repeats


def pairs_per_image(model) -> int:
    """(image, class) pairs a training image gives: the config's present + absent classes, or every class."""
    tc, num_classes = model.train_cfg, len(model.class_names)
    if tc['num_positive'] is None and tc['num_negative'] is None:
        return num_classes
    return min(num_classes, (tc['num_positive'] or num_classes) + (tc['num_negative'] or num_classes))


def measure_training(model, optim_wrapper, cycle, device, budget, args, size, report):
    """The training rows; ``cycle``: iterations per optimizer update (``accumulative_counts``)."""
    unet = model.decode_head.unet
    model.train()
    for images, ckpt in TRAIN_ROWS:
        row = dict(images=images, checkpointing=ckpt, pairs_per_image=pairs_per_image(model))
        if not budget.fits(args.reserve_s):
            report.add('training', dict(row, status='skipped: time budget'))
            continue
        (unet.enable_gradient_checkpointing if ckpt else unet.disable_gradient_checkpointing)()
        batch = synthetic_batch(images, size, len(model.class_names))
        losses = []

        def step():
            losses.append(float(torch.as_tensor(model.train_step(batch, optim_wrapper)['loss']).detach()))

        try:
            with budget.guard():
                first = timed(device, step, args.warmup)  # AdamW's states exist after the first update
                repeats = max(1, min(args.iters, int((budget.left() - args.reserve_s) / max(first, 1e-3))))
                if repeats >= cycle:
                    repeats -= repeats % cycle  # whole accumulation cycles: updates and accumulations alike
                device.reset_peak()
                row.update(step_s=timed(device, step, repeats), timed_iters=repeats, warmup_s=first,
                           peak_gib=device.peak_gib(), reserved_gib=device.reserved_peak_gib(),
                           losses_finite=all(math.isfinite(x) for x in losses), status='ok')
        except OutOfTime as err:
            row['status'] = f'stopped: {err}'
        except device.out_of_memory() as err:
            row['status'] = f'out of memory: {str(err)[:200]}'
        optim_wrapper.zero_grad()
        device.free()
        report.add('training', row)


def measure_inference(model, device, budget, args, size, report, rows):
    from mmseg_digseg.models.segmentors.digseg import INFERENCE_PRESETS
    model.eval()
    batch = synthetic_batch(1, size, len(model.class_names))
    for mode, precision, readout in rows:
        row = dict(mode=mode, precision=precision, mask_readout=readout, classes=len(model.class_names))
        if not budget.fits(args.reserve_s):
            report.add('inference', dict(row, status='skipped: time budget'))
            continue
        model.test_cfg.update(INFERENCE_PRESETS['1x1'], precision=precision, mask_readout=readout)
        try:
            with budget.guard(), torch.no_grad():
                weights = device.allocated_gib()
                device.reset_peak()
                first = timed(device, lambda: model.test_step(batch), 1)  # text features, kernel selection
                repeats = max(1, min(args.images, int((budget.left() - args.reserve_s) / max(first, 1e-3))))
                device.reset_peak()
                seconds = timed(device, lambda: model.test_step(batch), repeats)
                peak = device.peak_gib()
                row.update(images_per_s=1 / seconds, timed_images=repeats, first_image_s=first, weights_gib=weights,
                           peak_gib=peak, peak_over_weights_gib=None if peak is None else peak - weights,
                           status='ok')
        except OutOfTime as err:
            row['status'] = f'stopped: {err}'
        except device.out_of_memory() as err:
            row['status'] = f'out of memory: {str(err)[:200]}'
        device.free()
        report.add('inference', row)


def measure_all(config, device, budget, args, size, report, meta, start):
    """Training rows, then inference without the optimizer, then palette mode (a model of its own)."""
    with tempfile.TemporaryDirectory() as folder:
        cfg, model, optim_wrapper = build(config, folder, device)
        meta.update(num_classes=len(model.class_names), build_s=time.monotonic() - start,
                    weights_gib=device.allocated_gib())
        measure_training(model, optim_wrapper, cfg.optim_wrapper.get('accumulative_counts', 1), device, budget, args,
                         size, report)
        del optim_wrapper  # AdamW's states and the gradients: inference is measured without them
        model.zero_grad(set_to_none=True)
        device.free()
        measure_inference(model, device, budget, args, size, report, [r for r in INFER_ROWS if r[0] == 'binary'])
        del model
        device.free()
        palette_rows = [r for r in INFER_ROWS if r[0] == 'palette']
        try:
            if not budget.fits(args.reserve_s + 30):
                raise OutOfTime('no time left to build the palette model')
            _, model, _ = build(config, folder, device, palette=True)
            measure_inference(model, device, budget, args, size, report, palette_rows)
        except (OutOfTime, ValueError) as err:  # ValueError: a vocabulary the palette cannot keep apart
            for mode, precision, readout in palette_rows:
                report.add('inference', dict(mode=mode, precision=precision, mask_readout=readout,
                                             status=f'not run: {err}'))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, help='folder for device_check.json and device_check.md')
    p.add_argument('--budget-s', type=float, default=420, help='wall-time budget of the whole run (seconds)')
    p.add_argument('--tiny', action='store_true', help='CPU smoke run with the tiny config')
    p.add_argument('--warmup', type=int, default=2, help='training iterations before timing (an accumulation cycle)')
    p.add_argument('--iters', type=int, default=4, help='timed training iterations per row')
    p.add_argument('--images', type=int, default=3, help='timed images per inference row')
    p.add_argument('--reserve-s', type=float, default=10, help='seconds kept free to write the results')
    p.add_argument('--no-computed', action='store_true', help='skip the computed tables')
    p.add_argument('--computed-only', action='store_true', help=argparse.SUPPRESS)  # the background process
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.computed_only:
        with open(osp.join(args.out, 'computed.json'), 'w') as f:
            json.dump(computed_tables(args.tiny), f, indent=1)
        return None
    budget = Budget(args.budget_s)
    start = time.monotonic()
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit('device_check.py measures a CUDA GPU and none is visible (torch.cuda.is_available() is '
                         'False). On a CPU machine, run the smoke version: --tiny.')
    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    device = Device('cpu' if args.tiny else 'cuda')
    config, size = (TINY_CONFIG, 64) if args.tiny else (PAPER_CONFIG, 512)
    os.makedirs(args.out, exist_ok=True)
    computed = None if args.no_computed else start_computed(args.out, args.tiny)
    meta = dict(config=osp.relpath(config, REPO_ROOT), tiny=args.tiny, budget_s=args.budget_s, size=size,
                torch=torch.__version__, python=platform.python_version(),
                device=torch.cuda.get_device_name() if device.cuda else f'CPU ({os.cpu_count()} cores)',
                cuda=torch.version.cuda, cudnn_tf32=torch.backends.cudnn.allow_tf32,
                matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    report = Report(args.out, meta)
    if not budget.fits(args.reserve_s):
        for kind, rows in (('training', TRAIN_ROWS), ('inference', INFER_ROWS)):
            for row in rows:
                keys = ('images', 'checkpointing') if kind == 'training' else ('mode', 'precision', 'mask_readout')
                report.add(kind, dict(zip(keys, row), status='skipped: time budget'))
    else:
        measure_all(config, device, budget, args, size, report, meta, start)
    if computed is not None:
        report.data['computed'] = collect_computed(computed, args.out, budget)
    report.data['notes'] += [
        'peak allocated: torch.cuda.max_memory_allocated (tensors only); the computed column is the same '
        'quantity (docs/zoo.md); nvidia-smi adds the CUDA context and the caching allocator\'s slack.',
        'training: synthetic batches; the config\'s optimizer wrapper (paper config: AmpOptimWrapper in bf16, '
        'accumulative_counts, clip_grad); s / iteration averages update and accumulation iterations.']
    meta['elapsed_s'] = time.monotonic() - start
    report.write()
    print(markdown(report.data))
    return report.data


if __name__ == '__main__':
    main()
