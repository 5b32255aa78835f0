"""Shared fixtures: tiny models of the real classes, saved in the real on-disk formats."""
import os
import os.path as osp
import shutil

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SD21_FILES = osp.join(REPO_ROOT, 'tests/fixtures/sd21_base')  # SD 2.1-base's config files as published
TINY_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny_synth-shapes-64.py')

# OMP_NUM_THREADS=1 keeps a run usable while another job holds a core
torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', 2)))


@pytest.fixture(scope='session', autouse=True)
def mmseg_scope():
    """Build from MMSeg's registries as the Runner does (default scope 'mmseg')."""
    import mmseg_digseg  # noqa: F401  (registers DiGSeg's modules)
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)


def run_amp_on_cpu(cfg, patch) -> bool:
    """Make an ``AmpOptimWrapper`` config trainable on this CPU; True if it will train under bf16 autocast.

    AmpOptimWrapper refuses CPU-only machines (``patch(module, 'is_cuda_available', ...)`` lifts that). Where the
    CPU has no native bf16 (AVX2 only, where bf16 autocast runs ~100x slower than fp32) it becomes OptimWrapper,
    so that the same config trains in fp32 in a reasonable time."""
    from mmseg_digseg.models.segmentors.digseg import cpu_computes_natively
    if cfg.optim_wrapper.type != 'AmpOptimWrapper':
        return False
    if cpu_computes_natively(torch.bfloat16):
        import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
        patch(amp_module, 'is_cuda_available', lambda: True)
        return True
    for key in ('dtype', 'loss_scale'):
        cfg.optim_wrapper.pop(key, None)
    cfg.optim_wrapper.type = 'OptimWrapper'
    return False


def tiny_unet_cfg():
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/models/digseg_tiny.py')).model.decode_head.unet_cfg


def write_sd21_scheduler(root):
    """SD 2.1-base's own scheduler file (a PNDMScheduler config without timestep_spacing or
    rescale_betas_zero_snr), copied as published: what users' directories hold."""
    os.makedirs(osp.join(root, 'scheduler'), exist_ok=True)
    shutil.copy(osp.join(SD21_FILES, 'scheduler/scheduler_config.json'), osp.join(root, 'scheduler'))


@pytest.fixture(scope='session')
def tiny_sd_dir(tmp_path_factory):
    """A Stable-Diffusion-layout directory (vae/, unet/, scheduler/): tiny VAE and U-Net written with
    save_pretrained, and SD 2.1-base's own scheduler file."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    root = tmp_path_factory.mktemp('tiny_sd')
    torch.manual_seed(0)
    AutoencoderKL.from_pretrained(osp.join(REPO_ROOT, 'checkpoints/tiny_sd'), subfolder='vae').save_pretrained(
        root / 'vae')
    UNet2DConditionModel(**tiny_unet_cfg()).save_pretrained(root / 'unet')
    write_sd21_scheduler(root)
    return str(root)


@pytest.fixture(scope='session')
def tiny_clip_ckpt(tmp_path_factory):
    """A tiny open_clip checkpoint file (state dict), as open_clip saves and loads them."""
    import open_clip
    import mmseg_digseg  # noqa: F401  (registers the tiny open_clip config)
    torch.manual_seed(1)
    model = open_clip.create_model('DiGSeg-Tiny-CLIP')
    path = tmp_path_factory.mktemp('tiny_clip') / 'open_clip_pytorch_model.bin'
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    from mmseg_digseg.datasets import generate_synth_shapes
    return generate_synth_shapes(str(tmp_path_factory.mktemp('synth_shapes')), num_train=16, num_val=4)


@pytest.fixture(scope='session')
def tiny_cfg(synth_root):
    """The embedded default config, pointed at a small generated dataset."""
    from mmengine.config import Config
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.train_dataloader.dataset.data_root = synth_root
    cfg.val_dataloader.dataset.data_root = synth_root
    cfg.test_dataloader.dataset.data_root = synth_root
    return cfg


@pytest.fixture
def tiny_model(tiny_cfg):
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg.model)
    model.class_names = ['background', 'disc', 'square', 'triangle', 'cross', 'ring']
    return model
