"""FLOPs and parameters of a segmentor per image (MMSeg's get_flops), with DiGSeg's per-class loop counted.

    python tools/analysis_tools/get_flops.py CONFIG [--shape 512 512] [--num-classes N | --vocabulary NAME]
        [--preset 1x1] [--mask-readout vae|learned] [--random-weights] [--cfg-options KEY=VALUE ...]
    python tools/analysis_tools/get_flops.py CONFIG --train [--gpus 8] [--utilisation 0.35 0.40] [--random-weights]

FLOPs are mmengine's (``mmengine.analysis``, as MMSeg 1.x's tool): one multiply-add counts as one FLOP, and
elementwise operations are not counted. Attention is counted (``scaled_dot_product_attention``: its two
matrix products, which mmengine has no handle for).

DiGSeg is not one forward pass: inference loops over the vocabulary (a U-Net pass per class, ensemble member
and step, then a VAE decode or learned readout per class; palette mode: one mask for every class). Tracing
that loop would count one particular vocabulary; instead each part is counted once with mmengine's FLOP
counter (one U-Net pass, one decode, one readout, one encode, one text prompt) and multiplied by
``model.cost_per_view()`` for the vocabulary and ``test_cfg``. The breakdown is printed.

``--train`` adds the training cost: FLOPs per step per GPU (U-Net forward + backward ~ 3 forwards for each
sampled (image, class) pair, one more forward with gradient checkpointing; frozen VAE encodes; single-step
objectives: the frozen decoder's forward and input-gradient backward; the text features are cached), the
validations the schedule runs, and GPU-hours on A100 / H100 at the given utilisations (hardware FLOPs,
2 per multiply-add, over the peak dense bf16 rate).

``--random-weights`` builds Stable Diffusion configs as SD 2.1-base with random weights (no download;
``random_weights.py``): FLOPs do not depend on the weights. Runs on CPU; the full-size SD 2.1-base parts
take about a minute there.
"""
import argparse
import math
import os.path as osp
import sys
import tempfile
from typing import Dict

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the repo, for a checkout

import torch  # noqa: E402
from mmengine.analysis import FlopAnalyzer, get_model_complexity_info  # noqa: E402
from mmengine.analysis.jit_handles import get_shape  # noqa: E402
from mmengine.analysis.print_helper import _format_size  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from torch import nn  # noqa: E402

import mmseg_digseg  # noqa: E402,F401  (registers DiGSeg's modules)
from mmseg.registry import DATASETS, MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from random_weights import with_random_weights  # noqa: E402

# peak dense bf16 tensor-core rates (no sparsity), FLOP/s
GPUS = {'A100': 312e12, 'H100': 989e12}
# validation split sizes of the datasets the paper configs validate on (images)
VAL_IMAGES = {'ADE20KDataset': 2000, 'COCOStuffDataset': 5000}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Get the FLOPs of a segmentor (DiGSeg: per image and class)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 512], help='input image size (H [W])')
    vocab = parser.add_mutually_exclusive_group()
    vocab.add_argument('--num-classes', type=int, help='vocabulary size (placeholder class names)')
    vocab.add_argument('--vocabulary', help="a shipped vocabulary ('ade20k_847') or a .txt file, one class a line")
    parser.add_argument('--preset', help="test_cfg.preset, a paper row of ensemble x steps ('1x1', '8x2', ...)")
    parser.add_argument('--mask-readout', choices=['vae', 'learned'], help='test_cfg.mask_readout')
    parser.add_argument('--random-weights', action='store_true',
                        help='Stable Diffusion configs: SD 2.1-base with random weights (no download)')
    parser.add_argument('--train', action='store_true', help='also the training cost and GPU-hours')
    parser.add_argument('--gpus', type=int, default=8, help='GPUs of the training run (--train)')
    parser.add_argument('--utilisation', type=float, nargs='+', default=[0.35, 0.40],
                        help='hardware FLOPs / peak bf16 rate achieved (--train)')
    parser.add_argument('--val-images', type=int, help='images per validation (--train; default: the dataset\'s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    args.shape = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    return args


def sdpa_flop_jit(inputs, outputs):
    """``aten::scaled_dot_product_attention``: Q K^T and (softmax) V, one multiply-add each."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * q[-1] + batch * q[-2] * k[-2] * v[-1]


class _Call(nn.Module):
    """One call of a model part as a module, for mmengine's tracer (``owner`` keeps its parameters in scope)."""

    def __init__(self, owner: nn.Module, fn):
        super().__init__()
        self.owner, self.fn = owner, fn

    def forward(self, *inputs):
        return self.fn(*inputs)


def count_flops(owner: nn.Module, fn, *inputs) -> int:
    """mmengine's FLOP count of ``fn(*inputs)`` (multiply-adds), attention included."""
    analyzer = FlopAnalyzer(_Call(owner, fn), inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(analyzer.total())


def count_params(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def build_model(cfg: Config, args, folder: str):
    if args.random_weights:
        with_random_weights(cfg, folder)
    if args.preset is not None:
        cfg.model.setdefault('test_cfg', {})['preset'] = args.preset
    if args.mask_readout is not None:
        cfg.model.setdefault('test_cfg', {})['mask_readout'] = args.mask_readout
    model = MODELS.build(cfg.model).eval()
    if not hasattr(model, 'cost_per_view'):
        return model
    if args.num_classes is not None:
        model.class_names = [f'class {i}' for i in range(args.num_classes)]
    elif args.vocabulary is not None:
        model.class_names = args.vocabulary
    else:
        try:
            model.class_names
        except RuntimeError:  # the dataset's classes, as DiGSegVocabularyHook sets them
            dataset = cfg.test_dataloader.dataset
            classes = (dataset.get('metainfo') or {}).get('classes') or DATASETS.get(dataset.type).METAINFO['classes']
            model.dataset_meta = dict(classes=list(classes))
    if hasattr(model, 'colours'):  # palette mode: refuse a vocabulary its palette cannot keep apart, now
        model.colours(len(model.class_names))
    return model


def digseg_parts(model, height: int, width: int) -> Dict[str, int]:
    """FLOPs of one call of each DiGSeg part for one (window of an) image of ``height`` x ``width``."""
    factor = model.backbone.downsample_factor
    y1, y2, x1, x2 = model.windows(height, width)[0]  # windows share one size
    h, w = math.ceil((y2 - y1) / factor), math.ceil((x2 - x1) / factor)  # padded to the VAE factor
    image = torch.zeros(1, 3, h * factor, w * factor)
    names = model.class_names
    pooled, tokens = model.text_encoder(names[:1])  # one prompt: the token sequence's shape
    channels = model.backbone.latent_channels
    latent = torch.zeros(1, channels, h, w)
    if hasattr(model, 'vocabulary_prompt'):  # palette: one token per class, the vocabulary's mean embedding
        colours = model.colours(len(names))[None]
        tokens, pooled = model.vocabulary_prompt(pooled.new_zeros(len(names), pooled.shape[-1]), colours)
    timestep = torch.tensor([model.decode_head.num_train_timesteps - 1])
    head = model.decode_head
    parts = dict(
        encode=count_flops(model.backbone, model.backbone.encode, image),
        unet=count_flops(head, head.forward, latent, latent, timestep, tokens, pooled),
        decode=count_flops(model.backbone, model.backbone.decode_masks, latent))
    if model.mask_readout is not None:
        parts['readout'] = count_flops(model.mask_readout, model.mask_readout.forward, latent)
    if hasattr(model, 'vocabulary_prompt'):  # palette: the decoded colours' distances to every class colour
        from mmseg_digseg.models.segmentors.digseg_palette import colour_distance_logits
        parts['palette_logits'] = count_flops(
            model, lambda decoded: colour_distance_logits(decoded, colours[0], model.temperature), image)
    prompt = model.text_encoder.tokenizer([model.text_encoder.templates[0].format(names[0])])
    parts['text_prompt'] = count_flops(model.text_encoder, model.text_encoder.clip.encode_text, prompt)
    if model.test_cfg['topk_classes'] is not None:  # the pre-score's passes run on a smaller latent
        size = [max(1, round(s * model.test_cfg['prescore_scale'])) for s in (h, w)]
        small = torch.zeros(1, channels, *size)
        parts['unet_prescore'] = count_flops(head, head.forward, small, small, timestep, tokens, pooled)
        read = 'readout' if model.test_cfg['mask_readout'] == 'learned' else 'decode'
        fn = model.mask_readout.forward if read == 'readout' else model.backbone.decode_masks
        parts[f'{read}_prescore'] = count_flops(model, fn, small)
    return parts


def inference_rows(model, parts: Dict[str, int], height: int, width: int):
    """[(part, FLOPs per call, calls per image)] for the vocabulary and ``test_cfg``."""
    cost = model.cost_per_view(len(model.windows(height, width)))
    num_classes = len(model.class_names)
    topk = model.test_cfg['topk_classes']
    prescore = num_classes if topk is not None and topk < num_classes else 0
    rows = [('VAE encode (image)', parts['encode'], cost['encodes']),
            ('U-Net pass', parts['unet'], cost['unet'] - prescore)]
    read = 'readout' if cost['readouts'] else 'decode'
    label = 'learned readout' if read == 'readout' else 'VAE decode (mask)'
    rows.append((label, parts[read], cost[read + 's'] - prescore))
    if 'palette_logits' in parts:
        rows.append(('colour-distance logits', parts['palette_logits'], cost['decodes']))
    if prescore:
        rows += [('U-Net pass (top-K pre-score)', parts['unet_prescore'], prescore),
                 (f'{label} (top-K pre-score)', parts[f'{read}_prescore'], prescore)]
    return rows


def prompts_per_vocabulary(model) -> int:
    templates = len(model.text_encoder.templates)
    return sum(templates * len([s for s in name.split(',') if s.strip()]) for name in model.class_names)


def training_rows(model, cfg: Config, parts: Dict[str, int]):
    """[(part, FLOPs per call, calls per step and GPU, FLOPs executed per call)] of one training iteration.
    A trained pass is forward + backward ~ 3 forwards; gradient checkpointing runs the forward once more."""
    tc, images = model.train_cfg, cfg.train_dataloader.batch_size
    num_classes = len(model.class_names)
    palette = hasattr(model, 'vocabulary_prompt')
    if palette:
        pairs = images  # one colour mask per image, every class in it
    elif tc['num_positive'] is None and tc['num_negative'] is None:
        pairs = images * num_classes
    else:  # at most: images with fewer present classes than num_positive give fewer
        pairs = images * min(num_classes, (tc['num_positive'] or num_classes) + (tc['num_negative'] or num_classes))
    single_step = tc['objective'] == 'single_step'
    checkpointing = model.decode_head.unet.is_gradient_checkpointing
    rows = [('VAE encode (images)', parts['encode'], images, 1)]
    if palette:
        rows.append(('VAE encode (painted masks)', parts['encode'], images, 1))
    elif tc['objective'] == 'denoising' or tc['loss_weights'].get('latent') or model.mask_readout is not None:
        rows.append(('VAE encode (masks)', parts['encode'], pairs, 1))
    rows.append(('U-Net forward + backward' + (' + recompute' if checkpointing else ''), parts['unet'], pairs,
                 4 if checkpointing else 3))
    if single_step:  # through the frozen decoder: its forward and the gradient of its input, no weight gradients
        rows.append(('VAE decode forward + input gradient', parts['decode'], pairs, 2))
    if model.mask_readout is not None:  # trained on the encoder's latents (and the U-Net's, single_step)
        rows.append(('learned readout forward + backward', parts['readout'], pairs * (2 if single_step else 1), 3))
    return rows, pairs, checkpointing


def print_inference(model, parts, rows, height, width):
    total = sum(flops * calls for _, flops, calls in rows)
    cfg = model.test_cfg
    print(f"DiGSeg{' (palette mode)' if hasattr(model, 'vocabulary_prompt') else ''}: {len(model.class_names)} "
          f"classes, ensemble {cfg['ensemble_size']} x {cfg['num_steps']} steps, mask readout "
          f"{cfg['mask_readout']}, {height}x{width} input ({len(model.windows(height, width))} window(s))")
    print('| part | FLOPs per call | calls per image | FLOPs per image | share |')
    print('|---|---|---|---|---|')
    for name, flops, calls in rows:
        print(f'| {name} | {_format_size(flops)} | {calls} | {_format_size(flops * calls)} | '
              f'{100 * flops * calls / max(total, 1):.1f} % |')
    print(f'| **total** | | | **{_format_size(total)}** | |')
    prompts = prompts_per_vocabulary(model)
    print(f"Text tower: {_format_size(parts['text_prompt'])} per prompt, {prompts} prompts for the vocabulary "
          f"({_format_size(parts['text_prompt'] * prompts)}), once per run: the features are cached.")
    return total


def print_params(model):
    parts = dict(vae=model.backbone, text_tower=model.text_encoder, unet_head=model.decode_head,
                 readout=model.mask_readout)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print('Params: ' + ', '.join(f'{k} {_format_size(count_params(m))}' for k, m in parts.items() if m is not None)
          + f'; total {_format_size(count_params(model))}, trained {_format_size(trainable)}')


def print_training(model, cfg, args, parts, per_image):
    rows, pairs, checkpointing = training_rows(model, cfg, parts)
    executed = sum(flops * calls * passes for _, flops, calls, passes in rows)
    model_flops = executed - (parts['unet'] * pairs if checkpointing else 0)
    images = cfg.train_dataloader.batch_size
    print(f'\nTraining: {images} images x {pairs // images} (image, class) samples per GPU and iteration')
    print('| part | FLOPs per call | calls per iteration | forward-equivalents | FLOPs per iteration |')
    print('|---|---|---|---|---|')
    for name, flops, calls, passes in rows:
        print(f'| {name} | {_format_size(flops)} | {calls} | {passes} | {_format_size(flops * calls * passes)} |')
    print(f'| **total per GPU** | | | | **{_format_size(executed)}** (without the recompute: '
          f'{_format_size(model_flops)}) |')
    iters, val_interval = cfg.train_cfg.max_iters, cfg.train_cfg.get('val_interval', cfg.train_cfg.max_iters)
    validations = iters // val_interval + (iters % val_interval > 0) if cfg.get('val_dataloader') else 0
    val_images = args.val_images
    if val_images is None and validations:
        val_images = VAL_IMAGES.get(cfg.val_dataloader.dataset.type)
    train_total = 2 * executed * iters * args.gpus  # hardware FLOPs: 2 per multiply-add
    val_total = 2 * per_image * (val_images or 0) * validations
    print(f'{iters} iterations on {args.gpus} GPUs: {train_total:.3g} FLOPs (hardware, 2 per multiply-add); '
          f'{validations} validations of {val_images} images at the inference cost above (--shape): '
          f'{val_total:.3g} FLOPs')
    header = ' | '.join(f'{gpu} GPU-h at {int(100 * u)} %' for gpu in GPUS for u in args.utilisation)
    print(f'| part | {header} |')
    print('|---|' + '---|' * len(GPUS) * len(args.utilisation))
    for name, flops in (('training', train_total), ('validation', val_total), ('**all**', train_total + val_total)):
        hours = ' | '.join(f'{flops / (peak * u) / 3600:,.1f}' for peak in GPUS.values() for u in args.utilisation)
        print(f'| {name} | {hours} |')
    return dict(rows=rows, executed=executed, model_flops=model_flops, train_total=train_total, val_total=val_total)


def plain_segmentor(model, height, width):
    """MMSeg's own count for other segmentors: the whole model on one random image."""
    if type(model.decode_head).__name__ in ('MaskFormerHead', 'Mask2FormerHead'):
        raise NotImplementedError('MaskFormer and Mask2Former are not supported yet (as in MMSeg).')
    if hasattr(model, 'auxiliary_head'):
        model.auxiliary_head = None
    meta = dict(ori_shape=(height, width), pad_shape=(height, width))
    data = model.data_preprocessor(dict(inputs=[torch.rand(3, height, width)],
                                        data_samples=[SegDataSample(metainfo=meta)]))
    with torch.no_grad():
        out = get_model_complexity_info(model, inputs=data['inputs'], show_table=False, show_arch=False)
    print(f"Input shape: {(height, width)}\nFlops: {_format_size(out['flops'])}\nParams: {_format_size(out['params'])}")
    return out


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    height, width = args.shape
    with tempfile.TemporaryDirectory() as folder:
        model = build_model(cfg, args, folder)
        if not hasattr(model, 'cost_per_view'):
            return plain_segmentor(model, height, width)
        parts = digseg_parts(model, height, width)
    rows = inference_rows(model, parts, height, width)
    per_image = print_inference(model, parts, rows, height, width)
    print_params(model)
    result = dict(parts=parts, rows=rows, per_image=per_image)
    if args.train:  # training runs on the config's crops, whatever size inference was counted at
        crop = tuple(cfg.get('crop_size') or args.shape)
        train_parts = parts if crop == (height, width) else digseg_parts(model, *crop)
        print(f'\nTraining crops: {crop[0]}x{crop[1]}')
        result['train'] = print_training(model, cfg, args, train_parts, per_image)
    print('!!!Please be cautious if you use the results in papers: FLOPs here count a multiply-add once and '
          'skip elementwise operations, as mmengine does.')
    return result


if __name__ == '__main__':
    main()
