"""How well a config's text tower tells the classes of a vocabulary apart: what the U-Net gets to bind masks to.

    python tools/analysis_tools/text_separation.py CONFIG [--classes NAME ...] [--data-root DIR] [--top 5]
        [--word-groups] [--centred] [--out DIR] [--cfg-options KEY=VALUE ...]

The config's text encoder (its weights and templates, as training builds it) encodes the vocabulary: the classes
given, else the config's ``model.class_names``, else its validation dataset's classes. Printed: the cosine
similarity between classes of the pooled embedding (the class-embedding path into every ResNet block) and of
the token sequence (the cross-attention's keys, flattened), as mean / 95th percentile / max over the pairs, and
the ``--top`` nearest neighbours of the least separated classes. Two names a tower maps to nearly the same
features (cosine near 1) are hard to tell apart for any segmenter conditioned on them.

For names made of words, ``--word-groups`` averages the similarities over pairs that share the last word
(e.g. the shape of "dotted disc") and over pairs that share everything but it (the texture); on the 49-class
SynthShapes (``--data-root data/synth_shapes_many``) this shows which word the tower attends to. ``--centred``
measures the features less the vocabulary's mean (what palette mode does to its class tokens): whether
centring would pull the least separated classes apart. Writes ``text_separation.json`` under ``--out``.
"""
import argparse
import json
import os
import os.path as osp
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the repo, for a checkout

from mmengine.config import Config, DictAction  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--classes', nargs='+', help='the vocabulary (default: the config\'s class_names or dataset)')
    p.add_argument('--data-root', help='take the classes of this dataset root (the config\'s validation dataset type)')
    p.add_argument('--top', type=int, default=5, help='nearest neighbours shown for the least separated classes')
    p.add_argument('--word-groups', action='store_true',
                   help='similarity of pairs sharing the last word vs pairs sharing the words before it')
    p.add_argument('--centred', action='store_true', help="the features less the vocabulary's mean")
    p.add_argument('--out', help='folder for text_separation.json')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='key=value overrides of the config')
    return p.parse_args(argv)


def vocabulary(cfg, classes=None, data_root=None):
    if classes:
        return list(classes)
    if cfg.model.get('class_names') and data_root is None:
        from mmseg_digseg.datasets import load_vocabulary
        return load_vocabulary(cfg.model.class_names)
    from mmseg.registry import DATASETS
    dataset_cfg = cfg.val_dataloader.dataset.copy()
    if data_root is not None:
        dataset_cfg.data_root = data_root
    dataset_cfg.lazy_init = True  # metainfo only, no file listing
    return list(DATASETS.build(dataset_cfg).metainfo['classes'])


def pair_stats(features: torch.Tensor) -> dict:
    """Cosine similarity over the distinct pairs of rows: mean, 95th percentile, max; and the matrix."""
    unit = F.normalize(features.flatten(1).float(), dim=-1)
    sim = unit @ unit.T
    off = sim[~torch.eye(len(sim), dtype=torch.bool)]
    return dict(mean=float(off.mean()), p95=float(off.quantile(0.95)), max=float(off.max()), matrix=sim)


def word_groups(names, sim: torch.Tensor) -> dict:
    """Mean similarity of pairs sharing the last word only, the words before it only, or neither."""
    last = [n.split()[-1] for n in names]
    rest = [' '.join(n.split()[:-1]) for n in names]
    n = len(names)
    groups = dict(same_last_word=[], same_other_words=[], neither=[])
    for i in range(n):
        for j in range(i + 1, n):
            if last[i] == last[j] and rest[i] != rest[j]:
                groups['same_last_word'].append(float(sim[i, j]))
            elif rest[i] == rest[j] and last[i] != last[j]:
                groups['same_other_words'].append(float(sim[i, j]))
            elif last[i] != last[j] and rest[i] != rest[j]:
                groups['neither'].append(float(sim[i, j]))
    return {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}


def main(argv=None):
    args = parse_args(argv)
    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    names = vocabulary(cfg, args.classes, args.data_root)
    if len(names) < 2:
        raise ValueError(f'{len(names)} class name(s): give at least two (--classes or --data-root).')
    encoder = MODELS.build(cfg.model.text_encoder).eval()
    with torch.no_grad():
        pooled, tokens = encoder(names)
    if args.centred:
        pooled, tokens = pooled - pooled.mean(0), tokens - tokens.mean(0)
    result = dict(config=args.config, classes=names, text_encoder=cfg.model.text_encoder.get('model_name'),
                  centred=args.centred)
    print(f'{len(names)} classes, text encoder {result["text_encoder"]}: cosine similarity between classes'
          f'{" (features less the vocabulary mean)" if args.centred else ""}\n')
    print('| features | mean | 95th percentile | max |')
    print('|---|---|---|---|')
    stats = {}
    for key, features in (('pooled', pooled), ('tokens', tokens)):
        stats[key] = pair_stats(features)
        s = stats[key]
        print(f'| {key} | {s["mean"]:.3f} | {s["p95"]:.3f} | {s["max"]:.3f} |')
        result[key] = {k: v for k, v in s.items() if k != 'matrix'}
    sim = stats['pooled']['matrix'].clone()
    sim.fill_diagonal_(-2)
    nearest = sim.max(1).values
    print(f'\nleast separated classes (pooled), {args.top} nearest each:')
    result['nearest'] = {}
    for i in nearest.argsort(descending=True)[:args.top].tolist():
        top = sim[i].argsort(descending=True)[:args.top].tolist()
        result['nearest'][names[i]] = [(names[j], round(float(sim[i, j]), 4)) for j in top]
        print(f'  {names[i]}: ' + ', '.join(f'{names[j]} {float(sim[i, j]):.3f}' for j in top))
    if args.word_groups:
        print('\nmean similarity of pairs that share | the last word only | the other words only | neither |')
        print('|---|---|---|---|')
        for key in ('pooled', 'tokens'):
            groups = word_groups(names, stats[key]['matrix'])
            result[f'{key}_word_groups'] = groups
            print(f'| {key} | ' + ' | '.join('-' if v is None else f'{v:.3f}' for v in groups.values()) + ' |')
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(osp.join(args.out, 'text_separation.json'), 'w') as f:
            json.dump(result, f, indent=2)
        print(f'\nWrote {osp.join(args.out, "text_separation.json")}')
    return result


if __name__ == '__main__':
    main()
