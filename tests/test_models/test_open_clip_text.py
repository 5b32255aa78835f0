import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmseg_digseg.models.text_encoders import OpenCLIPTextEncoder


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
