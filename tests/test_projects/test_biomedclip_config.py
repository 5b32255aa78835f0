"""The MoNuSeg BiomedCLIP config builds and predicts with a local copy of BiomedCLIP: the tiny
BiomedCLIP-family model of the text encoder's tests, used offline (skipped, as those tests are, without
transformers)."""
import os.path as osp

import torch
from mmengine.config import Config

from ..conftest import REPO_ROOT
from ..test_models.test_biomedclip_text import offline_hub, tiny_biomedclip  # noqa: F401  (fixtures)

CONFIG = 'projects/medical/configs/digseg_vitl_monuseg-1000_biomedclip.py'


def test_biomedclip_config_from_a_local_copy(offline_hub, tiny_biomedclip, tiny_sd_dir, monkeypatch):  # noqa: F811
    from mmseg.registry import MODELS
    monkeypatch.setenv('DIGSEG_BIOMEDCLIP', tiny_biomedclip['local'])  # the config's switch to a local copy
    cfg = Config.fromfile(osp.join(REPO_ROOT, CONFIG))
    assert cfg.model.text_encoder.pretrained == tiny_biomedclip['local']
    cfg.model.backbone.pretrained = cfg.model.decode_head.pretrained = tiny_sd_dir  # tiny SD, same classes
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    assert model.text_encoder.hf_text and model.decode_head.text_proj.in_features == 32  # tiny PubMedBERT width
    model.class_names = ['background', 'nucleus, cell nucleus']
    with torch.no_grad():
        [out] = model.predict(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert out.seg_logits.data.shape == (2, 64, 64) and torch.isfinite(out.seg_logits.data).all()
