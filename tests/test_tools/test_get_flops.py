"""tools/analysis_tools/get_flops.py: MMSeg's FLOP count with DiGSeg's per-class loop counted part by part."""
import os.path as osp
import sys

import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from torch.utils.flop_counter import FlopCounterMode

from mmseg.registry import MODELS
from ..conftest import REPO_ROOT, TINY_CONFIG
from ..test_tools.test_device_check import device_check

sys.path.insert(0, osp.join(REPO_ROOT, 'tools/analysis_tools'))
import get_flops  # noqa: E402

PALETTE_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg-palette_tiny_synth-shapes-64.py')
SEGFORMER_CONFIG = osp.join(REPO_ROOT, 'configs/baselines/segformer_mit-b0_synth-shapes-64.py')
SYNTH_CLASSES = ['background', 'disc', 'square', 'triangle', 'cross', 'ring']


def tiny(config, **test_cfg):
    cfg = Config.fromfile(config)
    cfg.model.test_cfg.update(test_cfg)
    model = MODELS.build(cfg.model).eval()
    model.class_names = SYNTH_CLASSES
    model.text_encoder(SYNTH_CLASSES)  # cached, as after a run's first image
    return model


def traced_prediction(model, size=64):
    """mmengine's count of one whole prediction, the class loop unrolled by the tracer."""
    analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, size, size), ))
    analyzer.set_op_handle('aten::scaled_dot_product_attention', get_flops.sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total()


def test_attention_is_counted_as_its_two_products():
    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.zeros(2, 4, 10, 8), torch.zeros(2, 4, 6, 8), torch.zeros(2, 4, 6, 16)
    assert get_flops.count_flops(Attention(), Attention().forward, q, k, v) == 2 * 4 * 10 * 6 * (8 + 16)


def test_a_multiply_add_counts_once(tiny_model):
    """Convolutions and linear layers of one U-Net pass, against torch's own counter (2 FLOPs a multiply-add)."""
    head, latent = tiny_model.decode_head, torch.zeros(1, 16, 16, 16)
    pooled, tokens = tiny_model.text_encoder(['disc'])
    inputs = (latent, latent, torch.tensor([999]), tokens, pooled)
    analyzer = FlopAnalyzer(get_flops._Call(head, head.forward), inputs).unsupported_ops_warnings(False)
    with torch.no_grad():
        by_op = analyzer.by_operator()
        with FlopCounterMode(display=False) as torch_count:
            head(*inputs)
    assert by_op['conv'] + by_op['linear'] == torch_count.get_total_flops() / 2


def test_per_image_count_equals_tracing_the_whole_prediction():
    for config, test_cfg in ((TINY_CONFIG, {}), (TINY_CONFIG, dict(mask_readout='learned')), (PALETTE_CONFIG, {})):
        args = [config, '--shape', '64'] + (['--mask-readout', 'learned'] if test_cfg else [])
        result = get_flops.main(args)
        assert result['per_image'] == traced_prediction(tiny(config, **test_cfg)), (config, test_cfg)
        calls = {name: n for name, _, n in result['rows']}
        if config == PALETTE_CONFIG:  # one colour mask for every class
            assert calls == {'VAE encode (image)': 1, 'U-Net pass': 1, 'VAE decode (mask)': 1,
                             'colour-distance logits': 1}
        elif test_cfg:
            assert calls == {'VAE encode (image)': 1, 'U-Net pass': 6, 'learned readout': 6}
        else:
            assert calls == {'VAE encode (image)': 1, 'U-Net pass': 6, 'VAE decode (mask)': 6}


def test_vocabulary_preset_and_train_cost():
    result = get_flops.main([TINY_CONFIG, '--shape', '64', '--num-classes', '20', '--preset', '4x2', '--train'])
    calls = {name: n for name, _, n in result['rows']}
    assert calls == {'VAE encode (image)': 1, 'U-Net pass': 20 * 4 * 2, 'VAE decode (mask)': 20}
    # a real training step of the tiny config (2 images x 6 classes, single_step, learned readout) under torch's
    # counter: forward and backward of every part, frozen weights without gradients; torch skips the norms and
    # (on CPU) attention, which mmengine counts, so the count here is a little higher
    model = tiny(TINY_CONFIG)
    model.train()
    batch = device_check.synthetic_batch(2, 64, 6)
    data = model.data_preprocessor(batch, True)
    with FlopCounterMode(display=False) as torch_count:
        losses = model.loss(data['inputs'], data['data_samples'])
        sum(losses.values()).backward()
    train = get_flops.main([TINY_CONFIG, '--shape', '64', '--train'])['train']
    assert 0.9 < torch_count.get_total_flops() / 2 / train['executed'] < 1.0
    assert train['train_total'] == 2 * train['executed'] * 1300 * 8  # hardware FLOPs of the schedule on 8 GPUs


def test_other_segmentors_are_counted_the_mmseg_way():
    out = get_flops.main([SEGFORMER_CONFIG, '--shape', '64'])
    assert out['flops'] > 0 and out['params'] > 3e6  # SegFormer MiT-b0: 3.7 M parameters
