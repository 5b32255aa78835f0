"""Test a checkpoint: python tools/test.py CONFIG CKPT [--tta] [--show-dir D] [--work-dir D].

--search-threshold runs the validation split with the config's val_evaluator instead: a BinarySegMetric
there searches the threshold of this checkpoint and saves it to <work_dir>/binary_threshold.json, where a
later test of the checkpoint (test_evaluator.threshold='from_file') finds it.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the metrics are dumped as json')
    parser.add_argument('--out', help='directory to save the predicted label maps for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show the predictions in a window')
    parser.add_argument('--show-dir', help='directory where painted images (image | gt | prediction) are written')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (cfg.tta_pipeline)')
    parser.add_argument('--search-threshold', action='store_true',
                        help='predict the validation split with val_evaluator (BinarySegMetric\'s threshold search) '
                        'to save the threshold of this checkpoint for its tests')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'Checkpoint "{args.checkpoint}" does not exist: pass the .pth written by '
                         f'tools/train.py (its work_dir has a file `last_checkpoint` naming the latest).')
    # imported after the checks above, so that a wrong path fails in a second, not after MMSeg's imports
    from mmengine.runner import Runner

    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmseg_digseg.engine import finish_distributed, setup_cpu_distributed
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    setup_cpu_distributed(cfg, args.launcher)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.search_threshold:
        evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
        if not any(e.get('search_threshold') for e in evaluators):
            raise SystemExit('--search-threshold needs a val_evaluator that searches a threshold, e.g. '
                             "dict(type='BinarySegMetric', search_threshold=True); this config's has none.")
        cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    if args.show or args.show_dir:
        hook = cfg.default_hooks.visualization
        hook.draw = True
        if args.show:
            hook.show, hook.wait_time = True, args.wait_time
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir
    if args.tta:
        # SegTTAModel runs every view through the full sampler and averages softmax(logits)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    Runner.from_cfg(cfg).test()
    finish_distributed()  # on a normal exit (gloo aborts at exit without it)


if __name__ == '__main__':
    main()
