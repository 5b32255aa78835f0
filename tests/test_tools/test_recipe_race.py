"""tools/analysis_tools/recipe_race.py: every recipe's --cfg-options build the model it names (a typo in a
train_cfg key is refused by the model), and the summary table reads the rows as written."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config, DictAction

from ..conftest import REPO_ROOT


def load_race():
    spec = importlib.util.spec_from_file_location(
        'recipe_race', osp.join(REPO_ROOT, 'tools/analysis_tools/recipe_race.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RACE = load_race()


@pytest.mark.parametrize('name', [n for n in RACE.RECIPES if RACE.RECIPES[n][0] in (RACE.MANY, RACE.ORACLE)])
def test_each_digseg_recipe_builds_what_it_says(name, monkeypatch):
    from mmseg.registry import MODELS
    monkeypatch.syspath_prepend(osp.join(REPO_ROOT, 'tools'))  # as tools/train.py has it: the oracle's module
    config, options, _ = RACE.RECIPES[name]
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    model = MODELS.build(dict(cfg.model, class_names=['background', 'solid disc', 'dotted square']))
    head = model.decode_head
    expected_prediction = 'epsilon' if name == 'a' else 'v_prediction'
    assert head.prediction_type == expected_prediction
    assert head.train_scheduler.config.rescale_betas_zero_snr == (name != 'a')
    train = model.train_cfg
    if name == 'all':
        assert train['num_positive'] is None and train['num_negative'] is None
    else:  # a fixed number of classes per image: per-step cost independent of the vocabulary
        assert train['num_positive'] == (6 if name.startswith('e_ce_6') else 3)
        assert train['num_negative'] == (4 if name == 'c' else 1)
    single_step = name in ('e', 'e_ce', 'e_ce_6', 'e_oracle', 'e_ce_6_oracle', 'all')
    assert train['objective'] == ('single_step' if single_step else 'denoising')
    if not single_step:  # the config's (and the paper configs') [900, 1000), or all timesteps for (a), (b)
        expected = None if name in ('a', 'b') else (900, 1000)
        assert (train['timestep_range'] and tuple(train['timestep_range'])) == expected
    assert bool(train['loss_weights'].get('ce')) == (name in ('d', 'e_ce', 'e_ce_6', 'e_ce_6_oracle', 'all'))
    assert model.test_cfg['init_noise'] == ('zeros' if single_step else 'gaussian')
    assert type(model.text_encoder).__name__ == ('OracleWordText' if name.endswith('oracle') else 'OpenCLIPTextEncoder')


def test_summary_table():
    rows = [dict(recipe='b', seed=0, iters=500, train_s=200.4, miou=40.0, miou_learned=41.0),
            dict(recipe='b', seed=1, iters=510, train_s=199.6, miou=44.0, miou_learned=43.0),
            dict(recipe='f', seed=0, iters=900, train_s=201.0, miou=60.5)]
    lines = RACE.summary(rows).splitlines()
    assert lines[2] == ('| b | (a) with v-prediction and zero-terminal-SNR betas | 500 / 510 | 200 / 200 | '
                        '40.00 / 44.00 (seeds 0 / 1) | 42.00 +- 2.83 | 41.00 / 43.00 |')
    assert lines[3].startswith('| f | SegFormer-B0') and lines[3].endswith('| 60.50 (seeds 0) | 60.50 | - |')


@pytest.mark.parametrize('name', ['palette', 'palette_shuffled', 'palette_shuffled_attention', 'palette_old_vae',
                                  'palette_many', 'quickstart'])
def test_six_class_and_palette_recipes_build_what_they_say(name):
    config, options, _ = RACE.RECIPES[name]
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    assert cfg.model.type == ('DiGSeg' if name == 'quickstart' else 'DiGSegPalette')
    palette_vae = name in ('palette', 'palette_shuffled', 'palette_shuffled_attention', 'palette_many')
    if name != 'quickstart':
        assert cfg.model.train_cfg.shuffle_palette is name.startswith('palette_shuffled')
        assert cfg.model.train_cfg.loss_weights.get('attention', 0.0) == (name == 'palette_shuffled_attention')
    assert cfg.model.backbone.pretrained == ('checkpoints/tiny_sd_palette' if palette_vae else 'checkpoints/tiny_sd')
    dataset = 'SynthShapesManyDataset' if name == 'palette_many' else 'SynthShapesDataset'
    assert cfg.train_dataloader.dataset.type == cfg.test_dataloader.dataset.type == dataset


def test_pretrained_starts_digseg_recipes_from_the_saved_unet_and_leaves_baselines_alone():
    from diffusers import UNet2DConditionModel
    from mmseg.registry import MODELS
    tiny_sd = osp.join(REPO_ROOT, 'checkpoints/tiny_sd')
    assert RACE.pretrained_options(RACE.RECIPES['f'][0], tiny_sd) == [] and RACE.pretrained_options(RACE.MANY, None) == []
    config, options, _ = RACE.RECIPES['b_high_t']
    options = options + RACE.pretrained_options(config, tiny_sd)
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    head = MODELS.build(dict(cfg.model, class_names=['background', 'solid disc'])).decode_head
    saved = UNet2DConditionModel.from_pretrained(tiny_sd, subfolder='unet')
    for half in (slice(0, 16), slice(16, 32)):  # conv_in widened for [image, noisy mask] latents
        torch.testing.assert_close(head.unet.conv_in.weight[:, half], saved.conv_in.weight / 2)
    torch.testing.assert_close(head.unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.weight,
                               saved.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.weight)
    assert head.prediction_type == 'v_prediction'



def test_vae_option_swaps_the_vae_of_digseg_recipes_only():
    from diffusers import AutoencoderKL
    from mmseg.registry import MODELS
    palette_vae = osp.join(REPO_ROOT, 'checkpoints/tiny_sd_palette')  # another VAE than the configs' one
    assert RACE.vae_options(RACE.RECIPES['f'][0], palette_vae) == [] and RACE.vae_options(RACE.MANY, None) == []
    config, options, _ = RACE.RECIPES['b_high_t']
    options = options + RACE.vae_options(config, palette_vae)
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    backbone = MODELS.build(cfg.model.backbone)
    saved = AutoencoderKL.from_pretrained(palette_vae, subfolder='vae')
    torch.testing.assert_close(backbone.vae.encoder.conv_in.weight, saved.encoder.conv_in.weight)
    assert backbone.scaling_factor == saved.config.scaling_factor
    shipped = AutoencoderKL.from_pretrained(osp.join(REPO_ROOT, 'checkpoints/tiny_sd'), subfolder='vae')
    assert not torch.equal(backbone.vae.encoder.conv_in.weight, shipped.encoder.conv_in.weight)
    # the 49-class config itself loads the longer broad fit (docs/paper_recipe.md); the 6-class ones the shipped one
    assert Config.fromfile(osp.join(REPO_ROOT, RACE.MANY)).model.backbone.pretrained == 'checkpoints/tiny_sd_broad8k'
    for six in ('digseg_tiny_synth-shapes-64.py', 'digseg_tiny-pretrained_synth-shapes-64.py'):
        six = osp.join('configs/digseg', six)
        assert Config.fromfile(osp.join(REPO_ROOT, six)).model.backbone.pretrained == 'checkpoints/tiny_sd'


def test_digseg_runs_are_scored_with_the_vae_decode_named_and_the_learned_readout_on_request():
    """The 49-class config tests with the learned readout by default: the race's decode column must ask for the
    VAE decode itself, or it would silently score the learned readout twice."""
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO_ROOT, RACE.MANY))
    assert cfg.model.test_cfg.mask_readout == 'learned' and cfg.model.mask_readout.type == 'LatentMaskReadout'
    assert RACE.readout_tests(RACE.MANY, False) == dict(miou=('test', ['model.test_cfg.mask_readout=vae']))
    assert RACE.readout_tests(RACE.ORACLE, True) == dict(
        miou=('test', ['model.test_cfg.mask_readout=vae']),
        miou_learned=('test_learned', ['model.test_cfg.mask_readout=learned']))
    # baselines and the other configs keep their own test settings
    assert RACE.readout_tests(RACE.RECIPES['f'][0], True) == dict(miou=('test', []))
    assert RACE.readout_tests(RACE.RECIPES['palette_many'][0], True) == dict(miou=('test', []))
    # both options build (the model refuses an unknown readout, and 'learned' without a readout module)
    for readout in ('vae', 'learned'):
        cfg.merge_from_dict({'model.test_cfg.mask_readout': readout})
        model = MODELS.build(dict(cfg.model, class_names=['background', 'solid disc']))
        assert type(model.mask_readout).__name__ == 'LatentMaskReadout'


def test_quickstart_denoising_is_the_paper_configs_recipe_on_the_six_classes():
    from mmseg.registry import MODELS
    config, options, _ = RACE.RECIPES['quickstart_denoising']
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    assert cfg.train_dataloader.dataset.type == 'SynthShapesDataset'
    model = MODELS.build(dict(cfg.model, class_names=['background', 'disc', 'square']))
    train = model.train_cfg
    assert train['objective'] == 'denoising' and tuple(train['timestep_range']) == (900, 1000)
    assert (train['num_positive'], train['num_negative']) == (3, 1)
    assert not train['loss_weights'].get('ce')  # the single-step config's cross-entropy is off, as in the paper configs
    assert model.test_cfg['init_noise'] == 'gaussian' and model.decode_head.prediction_type == 'v_prediction'


def test_the_quickstart_config_is_the_raced_pretrained_denoising_recipe():
    """tools/quickstart.sh's config trains what `--recipes quickstart_denoising --pretrained checkpoints/tiny_sd
    --iters 1800` measured (docs/get_started.md), and segformer_6 is its SegFormer-B0 on the same data."""
    config, options, _ = RACE.RECIPES['quickstart_denoising']
    options = options + RACE.pretrained_options(config, 'checkpoints/tiny_sd') + ['train_cfg.max_iters=1800']
    raced = Config.fromfile(osp.join(REPO_ROOT, config))
    raced.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    quickstart = 'configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py'
    with open(osp.join(REPO_ROOT, 'tools/quickstart.sh')) as f:
        assert f'CONFIG={quickstart}' in f.read()
    for user in ('demo/gradio_app.py', 'tests/test_docs.py'):  # the quickstart's model by default / as stand-in
        with open(osp.join(REPO_ROOT, user)) as f:
            assert f"QUICKSTART_CONFIG = osp.join(REPO_ROOT, '{quickstart}')" in f.read(), user
    shipped = Config.fromfile(osp.join(REPO_ROOT, quickstart))
    assert shipped.model.decode_head.pretrained == raced.model.decode_head.pretrained == 'checkpoints/tiny_sd'
    assert shipped.model.decode_head.unet_cfg is None and raced.model.decode_head.unet_cfg is None
    for key in ('objective', 'num_positive', 'num_negative'):
        assert shipped.model.train_cfg[key] == raced.model.train_cfg[key]
    assert tuple(shipped.model.train_cfg.timestep_range) == tuple(raced.model.train_cfg.timestep_range) == (900, 1000)
    assert not shipped.model.train_cfg.get('loss_weights', {}).get('ce') and not raced.model.train_cfg.loss_weights.ce
    assert shipped.model.test_cfg == raced.model.test_cfg
    assert shipped.train_cfg.max_iters == raced.train_cfg.max_iters == 1800
    assert shipped.train_dataloader.batch_size == raced.train_dataloader.batch_size == 2
    segformer = Config.fromfile(osp.join(REPO_ROOT, RACE.RECIPES['segformer_6'][0]))
    assert segformer.model.decode_head.num_classes == 6 and RACE.RECIPES['segformer_6'][1] == []
    assert segformer.train_dataloader.dataset.type == shipped.train_dataloader.dataset.type == 'SynthShapesDataset'
