"""Training recipes side by side at equal wall time on this machine (docs/paper_recipe.md)::

    python tools/analysis_tools/recipe_race.py --recipes a b c e f --seeds 0 --budget-s 240 --out work_dirs/race

For each recipe (a config and ``--cfg-options``, see ``RECIPES``) and seed: a short pilot run times a training
step here; the real run gets the iterations that fill ``--budget-s``, with its warm-up + cosine schedule
stretched to them; then ``tools/test.py`` scores the last checkpoint on the config's test split (DiGSeg:
per-class binary masks, argmax over the whole vocabulary, read out by the VAE decode; ``--learned-readout``
adds the learned readout's column: the 49-class config's own default readout). Runs one after another (two
trainings on 2 cores slow each other down many times). Writes ``race.json`` after every run and ``race.md``
(one row per recipe: steps, train seconds, mIoU per seed, mean +- std).

``--pretrained DIR`` starts every DiGSeg recipe's U-Net from DIR/unet (e.g. the U-Net that
``tools/pretrain_tiny_unet.py`` pretrains as a text-to-image model) instead of the config's fresh one;
``--iters N`` trains every run N steps without a pilot: for two U-Nets of one architecture (pretrained and
from scratch), equal steps are equal wall time, without the pilot's +-20 % sizing noise. ``--vae DIR`` swaps
the VAE of every DiGSeg recipe for DIR/vae. Since the evening of December 7 the 49-class config loads the VAE
fitted on the broad unlabelled mix (``checkpoints/tiny_sd_broad``); ``--vae checkpoints/tiny_sd`` reproduces the
49-class races measured before.
"""
import argparse
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time

from tqdm import tqdm

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MANY = 'configs/digseg/digseg_tiny_synth-shapes-many-64.py'
ORACLE = 'tools/analysis_tools/configs/digseg_tiny_synth-shapes-many-64_oracle-text.py'
EPSILON = ['model.decode_head.scheduler_cfg.prediction_type=epsilon',
           'model.decode_head.scheduler_cfg.rescale_betas_zero_snr=False']
# the many-class config's default is (b, high t), the paper configs' recipe; (a) and (b) draw all timesteps
DENOISING = ['model.train_cfg.objective=denoising', 'model.test_cfg.init_noise=gaussian']
ALL_T = ['model.train_cfg.timestep_range=None']
HIGH_T = ['model.train_cfg.timestep_range=[900,1000]']
# name -> (config, --cfg-options, what it is). Every DiGSeg recipe draws a fixed number of classes per image
# and step, so its per-step cost does not grow with the vocabulary, except 'all'.
RECIPES = {
    'a': (MANY, DENOISING + EPSILON + ALL_T + ['model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1'],
          "the paper's literal recipe: epsilon, SD betas, 3 present + 1 absent, trailing DDIM 1x1"),
    'b': (MANY, DENOISING + ALL_T + ['model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1'],
          '(a) with v-prediction and zero-terminal-SNR betas'),
    'b_high_t': (MANY, DENOISING + HIGH_T + ['model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1'],
                 '(b) with training timesteps in [900, 1000), where 1-2 step sampling starts'),
    'c': (MANY, DENOISING + HIGH_T + ['model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=4'],
          '(b, high t) with 4 absent classes per image instead of 1'),
    'd': (MANY, DENOISING + HIGH_T + ['model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1',
                                      'model.train_cfg.loss_weights.ce=1.0'],
          '(b, high t) plus a cross-entropy across the drawn classes on the decoded clean estimate'),
    'e': (MANY, ['model.train_cfg.objective=single_step', 'model.test_cfg.init_noise=zeros',
                 'model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1',
                 'model.train_cfg.loss_weights.bce=1.0', 'model.train_cfg.loss_weights.dice=1.0'],
          'single-step (BCE + Dice on decoded masks) on 3 present + 1 absent classes'),
    'e_ce': (MANY, ['model.train_cfg.objective=single_step', 'model.test_cfg.init_noise=zeros',
                    'model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1',
                    'model.train_cfg.loss_weights.bce=1.0', 'model.train_cfg.loss_weights.dice=1.0',
                    'model.train_cfg.loss_weights.ce=1.0'],
             '(e) plus the cross-entropy across the drawn classes (the quickstart\'s losses on sampled classes)'),
    'e_ce_6': (MANY, ['model.train_cfg.objective=single_step', 'model.test_cfg.init_noise=zeros',
                      'model.train_cfg.num_positive=6', 'model.train_cfg.num_negative=1',
                      'model.train_cfg.loss_weights.bce=1.0', 'model.train_cfg.loss_weights.dice=1.0',
                      'model.train_cfg.loss_weights.ce=1.0'],
               '(e_ce) with up to 6 present classes per image (all of them here: 2-5 objects + background)'),
    # analysis: (e) with per-word prompt features as separable as a trained CLIP's (oracle_text.py)
    'e_oracle': (ORACLE, ['model.train_cfg.objective=single_step', 'model.test_cfg.init_noise=zeros',
                          'model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1',
                          'model.train_cfg.loss_weights.bce=1.0', 'model.train_cfg.loss_weights.dice=1.0'],
                 '(e) with OracleWordText in place of the seeded tiny text tower (analysis)'),
    'e_ce_6_oracle': (ORACLE, ['model.train_cfg.objective=single_step', 'model.test_cfg.init_noise=zeros',
                               'model.train_cfg.num_positive=6', 'model.train_cfg.num_negative=1',
                               'model.train_cfg.loss_weights.bce=1.0', 'model.train_cfg.loss_weights.dice=1.0',
                               'model.train_cfg.loss_weights.ce=1.0'],
                      '(e_ce_6) with OracleWordText in place of the seeded tiny text tower (analysis)'),
    'all': (MANY, ['model.train_cfg.objective=single_step', 'model.test_cfg.init_noise=zeros',
                   'model.train_cfg.num_positive=None', 'model.train_cfg.num_negative=None',
                   'model.train_cfg.loss_weights.bce=1.0', 'model.train_cfg.loss_weights.dice=1.0',
                   'model.train_cfg.loss_weights.ce=1.0'],
            "the 6-class single-step config's recipe: every class for every image (cost grows with the "
            'vocabulary)'),
    'f': ('configs/baselines/segformer_mit-b0_synth-shapes-many-64.py', [],
          'SegFormer-B0 from scratch, 8 images a step'),
    # palette mode (issue 18): one colour-coded mask per image, beside binary mode
    'palette_many': ('configs/digseg/digseg-palette_tiny_synth-shapes-many-64.py', [],
                     'palette mode on the 49 classes: fixed colours, the palette VAE'),
    'quickstart': ('configs/digseg/digseg_tiny_synth-shapes-64.py', [],
                   'binary mode on the 6 classes: the single-step config, every class per image'),
    'quickstart_denoising': ('configs/digseg/digseg_tiny_synth-shapes-64.py',
                             DENOISING + HIGH_T + ['model.train_cfg.num_positive=3', 'model.train_cfg.num_negative=1',
                                                   'model.train_cfg.loss_weights.ce=0.0'],
                             "the tiny model on the 6 classes with the paper configs' recipe (b_high_t); with "
                             '--pretrained, the quickstart'),
    'segformer_6': ('configs/baselines/segformer_mit-b0_synth-shapes-64.py', [],
                    'SegFormer-B0 from scratch on the 6 classes, 8 images a step'),
    'palette': ('configs/digseg/digseg-palette_tiny_synth-shapes-64.py', [],
                'palette mode on the 6 classes: fixed colours, the palette VAE'),
    'palette_shuffled': ('configs/digseg/digseg-palette_tiny_synth-shapes-64.py', ['model.train_cfg.shuffle_palette=True'],
                         'palette mode on the 6 classes, colours drawn per training image (bound through the prompt)'),
    'palette_shuffled_attention': ('configs/digseg/digseg-palette_tiny_synth-shapes-64.py',
                                   ['model.train_cfg.shuffle_palette=True', 'model.train_cfg.loss_weights.attention=1.0'],
                                   'palette_shuffled plus the attention loss: each pixel attends to its class token'),
    'palette_old_vae': ('configs/digseg/digseg-palette_tiny_synth-shapes-64.py',
                        ['model.backbone.pretrained=checkpoints/tiny_sd'],
                        'palette mode on the 6 classes with the shipped VAE (fitted without painted maps)'),
}
NO_VAL = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--recipes', nargs='+', default=['a', 'b', 'b_high_t', 'c', 'd', 'e', 'f'], choices=list(RECIPES))
    p.add_argument('--seeds', nargs='+', type=int, default=[0])
    p.add_argument('--budget-s', type=float, default=240, help='training wall time per run, in seconds')
    p.add_argument('--pilot-iters', type=int, default=16)
    p.add_argument('--learned-readout', action='store_true', help='also test DiGSeg with the learned readout')
    p.add_argument('--data-root', help='override the dataset root of every config')
    p.add_argument('--pretrained', metavar='DIR', help='DiGSeg recipes start from the U-Net (and scheduler) in DIR')
    p.add_argument('--vae', metavar='DIR', help='DiGSeg recipes use the VAE in DIR/vae instead of the config\'s')
    p.add_argument('--iters', type=int, help='train every run this many steps (no pilot; --budget-s is ignored)')
    p.add_argument('--out', default='work_dirs/recipe_race')
    return p.parse_args()


def run(args, log_path):
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONUNBUFFERED='1'))
    with open(log_path) as f:
        text = f.read()
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(args[:2])} failed (exit {proc.returncode}); see {log_path}:\n{text[-2000:]}')
    return text


def data_options(root):
    return [] if root is None else [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]


def pretrained_options(config, root):
    """Start the U-Net of a config that has one (DiGSeg's, not a baseline's) from ``root``; its scheduler settings
    stay the config's."""
    from mmengine.config import Config
    if root is None or 'unet_cfg' not in Config.fromfile(osp.join(REPO_ROOT, config)).model.decode_head:
        return []
    return [f'model.decode_head.pretrained={root}', 'model.decode_head.unet_cfg=None']


def vae_options(config, root):
    """Swap the VAE of a config that has one (DiGSeg's, not a baseline's) for the one in ``root``."""
    from mmengine.config import Config
    if root is None or Config.fromfile(osp.join(REPO_ROOT, config)).model.backbone.type != 'LatentVAE':
        return []
    return [f'model.backbone.pretrained={root}']


def seconds_per_step(config, options, work_dir, pilot_iters):
    """The median logged step time of a short run (the first 4 steps, warm-up, left out)."""
    run(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *options, *NO_VAL,
         f'train_cfg.max_iters={pilot_iters}', 'default_hooks.logger.interval=1',
         f'default_hooks.checkpoint.interval={pilot_iters + 1}'], osp.join(work_dir, 'pilot.log'))
    times = []
    for root, _, files in os.walk(work_dir):
        for name in files:
            if name == 'scalars.json':
                with open(osp.join(root, name)) as f:
                    times += [r['time'] for r in map(json.loads, f) if 'time' in r and r.get('step', 0) > 4]
    if not times:
        raise RuntimeError(f'no step times logged under {work_dir}')
    return statistics.median(times)


def test_miou(config, options, checkpoint, work_dir, extra=()):
    text = run(['tools/test.py', config, checkpoint, '--work-dir', work_dir, '--cfg-options', *options, *extra],
               osp.join(work_dir, 'test.log'))
    found = re.findall(r'mIoU: ([\d.]+)', text)
    if not found:
        raise RuntimeError(f'no mIoU in {work_dir}/test.log')
    return float(found[-1])


def race_one(name, seed, args):
    config, options, _ = RECIPES[name]
    options = [*options, *data_options(args.data_root), *pretrained_options(config, args.pretrained),
               *vae_options(config, args.vae), f'randomness.seed={seed}']
    work_dir = osp.join(args.out, f'{name}_seed{seed}')
    os.makedirs(work_dir, exist_ok=True)
    if args.iters:
        step_s, iters = None, args.iters
    else:
        step_s = seconds_per_step(config, options, osp.join(work_dir, 'pilot'), args.pilot_iters)
        iters = max(50, int(args.budget_s / step_s))
    start = time.perf_counter()
    # the configs' schedule: linear warm-up for 20 steps, then cosine to the last step
    run(['tools/train.py', config, '--work-dir', osp.join(work_dir, 'train'), '--cfg-options', *options, *NO_VAL,
         f'train_cfg.max_iters={iters}', f'param_scheduler.1.end={iters}',
         f'default_hooks.checkpoint.interval={iters}'], osp.join(work_dir, 'train.log'))
    train_s = time.perf_counter() - start
    with open(osp.join(work_dir, 'train', 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    row = dict(recipe=name, seed=seed, pilot_step_s=step_s, iters=iters, train_s=round(train_s, 1))
    for key, (test_dir, readout) in readout_tests(config, args.learned_readout).items():
        row[key] = test_miou(config, options, checkpoint, osp.join(work_dir, test_dir), readout)
    return row


def readout_tests(config, learned_readout):
    """Row key -> (test folder, --cfg-options) of each test of a trained run. DiGSeg binary-mode runs are scored
    with the paper's VAE decode ('miou'), named explicitly because the 49-class config tests with the learned
    readout by default, and with ``--learned-readout`` also with the learned readout ('miou_learned')."""
    if config not in (MANY, ORACLE):
        return dict(miou=('test', []))
    tests = dict(miou=('test', ['model.test_cfg.mask_readout=vae']))
    if learned_readout:
        tests['miou_learned'] = ('test_learned', ['model.test_cfg.mask_readout=learned'])
    return tests


def summary(rows):
    lines = ['| recipe | what | steps | train s | mIoU per seed | mean +- std | learned readout |',
             '|---|---|---|---|---|---|---|']
    for name in dict.fromkeys(r['recipe'] for r in rows):
        mine = [r for r in rows if r['recipe'] == name]
        mious = [r['miou'] for r in mine]
        spread = f'{statistics.mean(mious):.2f} +- {statistics.stdev(mious):.2f}' if len(mious) > 1 else f'{mious[0]:.2f}'
        learned = ' / '.join(f"{r['miou_learned']:.2f}" for r in mine if 'miou_learned' in r) or '-'
        lines.append(f"| {name} | {RECIPES[name][2]} | {' / '.join(str(r['iters']) for r in mine)} | "
                     f"{' / '.join(str(round(r['train_s'])) for r in mine)} | "
                     f"{' / '.join(f'{m:.2f}' for m in mious)} (seeds {' / '.join(str(r['seed']) for r in mine)}) | "
                     f'{spread} | {learned} |')
    return '\n'.join(lines) + '\n'


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    results_path = osp.join(args.out, 'race.json')
    rows = []
    if osp.isfile(results_path):  # an interrupted race goes on where it stopped
        with open(results_path) as f:
            rows = json.load(f)
    done = {(r['recipe'], r['seed']) for r in rows}
    todo = [(n, s) for s in args.seeds for n in args.recipes if (n, s) not in done]
    for name, seed in tqdm(todo, desc='recipes'):
        rows.append(race_one(name, seed, args))
        tqdm.write(f"{name} seed {seed}: {rows[-1]['iters']} steps, {rows[-1]['train_s']} s, mIoU {rows[-1]['miou']}")
        with open(results_path, 'w') as f:
            json.dump(rows, f, indent=1)
    table = summary([r for r in rows if r['recipe'] in args.recipes])
    with open(osp.join(args.out, 'race.md'), 'w') as f:
        budget = f'{args.iters} steps' if args.iters else f'{args.budget_s:.0f} s'
        f.write(f'Budget {budget} of training per run: python {" ".join(sys.argv)}\n\n{table}')
    print(table)


if __name__ == '__main__':
    main()
