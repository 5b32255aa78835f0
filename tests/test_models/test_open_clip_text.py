import copy
import os.path as osp

import open_clip
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from open_clip.model import _build_text_tower
from open_clip.transformer import QuickGELU
from torch import nn

from mmseg.registry import MODELS
from mmseg_digseg.models.text_encoders import TEMPLATES, OpenCLIPTextEncoder

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_encoder(**kwargs):
    return OpenCLIPTextEncoder(**dict(dict(model_name='DiGSeg-Tiny-CLIP', pretrained=None), **kwargs))


def test_embeddings_match_open_clip_and_cache_hits_do_not_recompute():
    encoder = make_encoder()
    names = ['disc', 'square', 'ring']
    before = encoder.num_encoded
    pooled, tokens = encoder(names)
    assert encoder.num_encoded == before + 3
    assert pooled.shape == (3, encoder.embed_dim) and tokens.shape == (3, 16, encoder.token_dim)
    # the pooled vector is open_clip's own normalised text embedding of the prompt
    text = encoder.tokenizer([f'a photo of a {n} in the scene' for n in names])
    torch.testing.assert_close(pooled, encoder.clip.encode_text(text, normalize=True), atol=1e-5, rtol=1e-5)
    again = encoder(names)
    assert encoder.num_encoded == before + 3  # cache hit
    assert again[0] is pooled


def test_templates_and_synonyms_are_averaged():
    encoder = make_encoder(templates='vild')
    assert len(encoder.templates) == 14
    pooled, _ = encoder(['disc, circle'])
    prompts = [t.format(s) for s in ('disc', 'circle') for t in encoder.templates]
    expected = F.normalize(encoder.clip.encode_text(encoder.tokenizer(prompts), normalize=True).mean(0), dim=-1)
    torch.testing.assert_close(pooled[0], expected, atol=1e-5, rtol=1e-5)


def test_imagenet_templates_are_open_clips_80():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    encoder = make_encoder(templates='imagenet80')
    assert len(encoder.templates) == 80
    prompts = [t('ring') for t in OPENAI_IMAGENET_TEMPLATES]
    expected = F.normalize(encoder.clip.encode_text(encoder.tokenizer(prompts), normalize=True).mean(0), dim=-1)
    torch.testing.assert_close(encoder(['ring'])[0][0], expected, atol=1e-5, rtol=1e-5)


def test_random_init_is_seeded():
    a, b = make_encoder(), make_encoder()
    torch.testing.assert_close(a(['ring'])[0], b(['ring'])[0])
    assert not torch.allclose(a(['ring'])[0], make_encoder(seed=1)(['ring'])[0])


def test_loads_an_open_clip_checkpoint_by_path(tiny_clip_ckpt):
    encoder = make_encoder(pretrained=tiny_clip_ckpt)
    reference = open_clip.create_model('DiGSeg-Tiny-CLIP', pretrained=tiny_clip_ckpt)
    text = encoder.tokenizer(['a photo of a cross in the scene'])
    torch.testing.assert_close(encoder(['cross'])[0], reference.encode_text(text, normalize=True))
    assert not any(p.requires_grad for p in encoder.parameters())


def test_bad_inputs_have_clear_errors(tmp_path):
    encoder = make_encoder()
    with pytest.raises(ValueError, match='empty'):
        encoder([])
    with pytest.raises(FileNotFoundError, match='text_encoder.pretrained'):
        make_encoder(pretrained=str(tmp_path / 'missing.bin'))
    with pytest.raises(ValueError, match='Unknown open_clip model'):
        make_encoder(model_name='ViT-Nope')
    with pytest.raises(ValueError, match='template'):
        make_encoder(templates=['no placeholder'])
    with pytest.raises(ValueError, match="Unknown template set 'imagenet'"):
        make_encoder(templates='imagenet')


def test_disk_cache_spares_the_text_tower_on_the_next_run(tmp_path):
    cache_dir = tmp_path / 'missing' / 'text_cache'  # created on first use
    first = make_encoder(cache_dir=str(cache_dir))
    pooled, tokens = first(['disc', 'ring'])
    assert len(list(cache_dir.glob('*.pt'))) == 1
    second = make_encoder(cache_dir=str(cache_dir))
    before = second.num_encoded
    again = second(['disc', 'ring'])
    assert second.num_encoded == before  # read from disk, not encoded
    torch.testing.assert_close(again[0], pooled)
    torch.testing.assert_close(again[1], tokens)
    # another vocabulary or other templates are other entries
    second(['ring', 'disc'])
    make_encoder(cache_dir=str(cache_dir), templates='vild')(['disc', 'ring'])
    assert len(list(cache_dir.glob('*.pt'))) == 3


def test_paper_template_is_the_figures_prompt():
    assert TEMPLATES['paper'] == ('A photo of a {}.', )
    encoder = make_encoder(templates='paper')
    # open_clip's tokenizer lowercases: the figure's capital A is the same prompt as "a photo of a ..."
    torch.testing.assert_close(encoder.tokenizer(['A photo of a disc.']), encoder.tokenizer(['a photo of a disc.']))
    expected = encoder.clip.encode_text(encoder.tokenizer(['A photo of a disc.']), normalize=True)
    torch.testing.assert_close(encoder(['disc'])[0], expected, atol=1e-5, rtol=1e-5)


def test_features_are_fp32_under_autocast():
    """bf16 autocast (half-precision testing, AMP training) must not change the text features: bit-equal."""
    reference = make_encoder()
    pooled, tokens = reference(['disc', 'ring, circle'])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        encoder = make_encoder()  # built (and its probe encoded) under autocast too
        assert torch.is_autocast_enabled('cpu')
        pooled_amp, tokens_amp = encoder(['disc', 'ring, circle'])
        assert torch.is_autocast_enabled('cpu')  # the caller's autocast state is restored
    assert pooled_amp.dtype == tokens_amp.dtype == torch.float32
    assert torch.equal(pooled_amp, pooled) and torch.equal(tokens_amp, tokens)
    # a tower cast to half precision with the rest of the model still encodes in fp32
    encoder.to(torch.bfloat16)
    assert encoder(['square'])[0].dtype == torch.float32 and encoder.clip.token_embedding.weight.dtype == torch.float32


def activations(encoder):
    return [block.mlp.gelu for block in encoder.clip.transformer.resblocks]


def test_quick_gelu_option(tiny_clip_ckpt, tmp_path):
    # None: open_clip's config for a local file (GELU); True/False force it; the features follow
    default, quick = make_encoder(pretrained=tiny_clip_ckpt), make_encoder(pretrained=tiny_clip_ckpt, quick_gelu=True)
    assert all(type(act) is nn.GELU for act in activations(default)) and not default.quick_gelu
    assert all(type(act) is QuickGELU for act in activations(quick)) and quick.quick_gelu
    torch.testing.assert_close(quick.clip.token_embedding.weight, default.clip.token_embedding.weight)
    assert not torch.allclose(quick(['ring'])[0], default(['ring'])[0], atol=1e-4)
    forced_off = make_encoder(pretrained=tiny_clip_ckpt, quick_gelu=False)
    torch.testing.assert_close(forced_off(['ring'])[0], default(['ring'])[0])
    # None with a tag trained with QuickGELU builds QuickGELU (open_clip 3.x would build GELU and only warn)
    assert open_clip.get_pretrained_cfg('ViT-L-14', 'openai')['quick_gelu']
    assert OpenCLIPTextEncoder._activation_kwargs('ViT-L-14', 'openai', None) == dict(force_quick_gelu=True)
    assert OpenCLIPTextEncoder._activation_kwargs('ViT-L-14', '/weights/ViT-L-14.bin', None) == {}
    # the activation is part of the disk-cache key
    make_encoder(pretrained=tiny_clip_ckpt, cache_dir=str(tmp_path))(['ring'])
    make_encoder(pretrained=tiny_clip_ckpt, cache_dir=str(tmp_path), quick_gelu=True)(['ring'])
    assert len(list(tmp_path.glob('*.pt'))) == 2


def random_clip_checkpoint(model_name, path, seed=0):
    """An open_clip checkpoint file (a full CLIP state dict) with random text weights, as open_clip initialises
    them. The image tower, which the text encoder drops, is all zeros stored as zero-stride views, so the
    file holds little more than the text tower and loads fast."""
    cfg = open_clip.get_model_config(model_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = _build_text_tower(cfg['embed_dim'], cfg['text_cfg']).state_dict()
    with torch.device('meta'):
        full = open_clip.CLIP(**cfg).state_dict()
    assert set(text) < set(full)
    torch.save({k: text[k] if k in text else torch.zeros((), dtype=v.dtype).expand(v.shape)
                for k, v in full.items()}, path)
    return str(path)


PAPER_TEXT_ENCODERS = {'configs/_base_/models/digseg_sd21_vitl.py': 'ViT-L-14',
                       'configs/_base_/models/digseg_sd21_vitb.py': 'ViT-B-16'}


@pytest.fixture(scope='session')
def paper_clip_ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp('paper_clip')
    return {name: random_clip_checkpoint(name, root / f'{name}.bin') for name in PAPER_TEXT_ENCODERS.values()}


@pytest.mark.parametrize('config', sorted(PAPER_TEXT_ENCODERS))
def test_paper_configs_build_quick_gelu_towers_from_local_files(config, paper_clip_ckpts):
    """OpenAI's ViT-L/14 and ViT-B/16 were trained with QuickGELU; a local file must be built that way too."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, config)).model.text_encoder
    assert cfg.model_name == PAPER_TEXT_ENCODERS[config] and cfg.templates == 'paper'
    cfg.pretrained = paper_clip_ckpts[cfg.model_name]  # as DIGSEG_CLIP_L14 / DIGSEG_CLIP_B16 would
    encoder = MODELS.build(cfg)
    acts = activations(encoder)
    assert len(acts) == 12 and all(type(act) is QuickGELU for act in acts) and encoder.quick_gelu
    state = torch.load(cfg.pretrained)
    torch.testing.assert_close(encoder.clip.transformer.resblocks[0].mlp.c_fc.weight,
                               state['transformer.resblocks.0.mlp.c_fc.weight'], rtol=0, atol=0)
    pooled, tokens = encoder(['cat'])
    text = encoder.tokenizer(['A photo of a cat.'])
    torch.testing.assert_close(pooled, encoder.clip.encode_text(text, normalize=True), atol=1e-5, rtol=1e-5)
    assert tokens.shape == (1, 77, encoder.clip.transformer.width)
    # the same weights with GELU (what open_clip builds for a local ViT-L-14 / ViT-B-16 file) give other features
    gelu = copy.deepcopy(encoder.clip)
    for block in gelu.transformer.resblocks:
        block.mlp.gelu = nn.GELU()
    # (far beyond float noise; small here only because a random tower's MLPs add little to the residual stream)
    assert not torch.allclose(pooled, gelu.encode_text(text, normalize=True), atol=5e-4, rtol=0)


def test_free_text_is_encoded_as_written_without_templates_or_cache():
    encoder = make_encoder()
    before = encoder.num_encoded
    captions = ['a dotted disc and a solid cross', '']
    pooled, tokens = encoder.encode_texts(captions)
    assert pooled.shape == (2, encoder.embed_dim) and tokens.shape == (2, 16, encoder.token_dim)
    expected = encoder.clip.encode_text(encoder.tokenizer(captions), normalize=True)  # no template around them
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
    assert encoder.num_encoded == before and not encoder._cache.get(tuple(captions))  # nothing cached
