"""BiomedCLIP as the text encoder: open_clip's Hub model with a Hugging Face (PubMedBERT) text tower.

No weights can be downloaded here, so a tiny model of the same family is written in the real on-disk
formats: a Hugging Face cache holding ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``
(open_clip_config.json with BiomedCLIP's own text_cfg, open_clip_pytorch_model.bin, tokenizer files) and
``microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract`` (the BERT architecture config and tokenizer the
text tower is built from), used offline; and a ``hf download --local-dir`` style copy of the former.
"""
import copy
import json
import shutil

import open_clip
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('transformers')
import huggingface_hub.constants  # noqa: E402
from transformers import BertConfig  # noqa: E402

from mmseg_digseg.models.text_encoders import OpenCLIPTextEncoder  # noqa: E402
from mmseg_digseg.models.text_encoders.open_clip_text import BIOMEDCLIP, HF_TEXT_REPOS  # noqa: E402

BIOMEDCLIP_REPO = BIOMEDCLIP[len('hf-hub:'):]
BERT_REPO = HF_TEXT_REPOS[BIOMEDCLIP]
WORDS = ['a', 'photo', 'of', '.', 'nucleus', 'nuclei', 'background', 'object', 'cell', 'optic', 'disc', 'cup']
TEXT_CFG = {  # BiomedCLIP's open_clip_config.json text_cfg, but a shorter context
    'hf_model_name': BERT_REPO, 'hf_tokenizer_name': BERT_REPO, 'hf_proj_type': 'mlp',
    'hf_pooler_type': 'cls_last_hidden_state_pooler', 'context_length': 16}


def write_bert(folder):
    """A tiny uncased BERT: architecture config and WordPiece tokenizer files, as the Hub repo has them."""
    folder.mkdir(parents=True)
    BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=64).save_pretrained(folder)
    (folder / 'vocab.txt').write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + WORDS) + '\n')
    (folder / 'tokenizer_config.json').write_text(json.dumps(
        {'tokenizer_class': 'BertTokenizer', 'do_lower_case': True, 'model_max_length': 64}))


def hub_snapshot(cache, repo_id):
    """The Hugging Face cache layout (models--ORG--NAME/refs/main, snapshots/REVISION/)."""
    repo = cache / ('models--' + repo_id.replace('/', '--'))
    revision = '0123456789abcdef0123456789abcdef01234567'
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(revision)
    return repo / 'snapshots' / revision


@pytest.fixture(scope='session')
def tiny_biomedclip(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_biomedclip')
    bert = hub_snapshot(root / 'hub', BERT_REPO)
    write_bert(bert)
    config = {'model_cfg': {'embed_dim': 16,
                            'vision_cfg': {'image_size': 32, 'layers': 1, 'width': 32, 'patch_size': 16,
                                           'head_width': 32},
                            'text_cfg': TEXT_CFG},
              'preprocess_cfg': {'mean': [0.48145466, 0.4578275, 0.40821073],
                                 'std': [0.26862954, 0.26130258, 0.27577711]}}
    torch.manual_seed(0)
    model = open_clip.CustomTextCLIP(**dict(config['model_cfg'], text_cfg=dict(
        TEXT_CFG, hf_model_name=str(bert), hf_model_pretrained=False)))
    clip_repo = hub_snapshot(root / 'hub', BIOMEDCLIP_REPO)
    clip_repo.mkdir(parents=True)
    (clip_repo / 'open_clip_config.json').write_text(json.dumps(config))
    torch.save(model.state_dict(), clip_repo / 'open_clip_pytorch_model.bin')
    for name in ('vocab.txt', 'tokenizer_config.json'):  # BiomedCLIP's repo carries the tokenizer too
        shutil.copy(bert / name, clip_repo / name)
    local = root / 'BiomedCLIP'  # hf download microsoft/BiomedCLIP-... --local-dir DIR
    shutil.copytree(clip_repo, local)
    return dict(cache=root / 'hub', local=str(local), state=model.state_dict())


@pytest.fixture
def offline_hub(tiny_biomedclip, monkeypatch):
    """HF_HUB_OFFLINE=1 with HF_HUB_CACHE at the tiny cache (huggingface_hub reads both at call time)."""
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tiny_biomedclip['cache']))
    return tiny_biomedclip['cache']


def test_biomedclip_from_its_hub_id(offline_hub, tiny_biomedclip):
    encoder = OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=None, templates='paper')
    assert encoder.hf_text and encoder.embed_dim == 16 and encoder.token_dim == 32  # BERT width, not CLIP's
    name = 'text.transformer.embeddings.word_embeddings.weight'
    assert torch.equal(encoder.clip.state_dict()[name], tiny_biomedclip['state'][name])
    pooled, tokens = encoder(['nucleus', 'optic disc, optic cup'])
    assert pooled.dtype == tokens.dtype == torch.float32 and tokens.shape == (2, 16, 32)
    # open_clip's own model and tokenizer for the same hub id
    reference = open_clip.create_model(BIOMEDCLIP).eval()
    tokenizer = open_clip.get_tokenizer(BIOMEDCLIP)
    text = tokenizer(['A photo of a nucleus.'])
    assert text[0, :8].tolist() == [2, 5, 6, 7, 5, 9, 8, 3]  # [CLS] a photo of a nucleus . [SEP]: lowercased
    torch.testing.assert_close(pooled[0], reference.encode_text(text, normalize=True)[0], atol=1e-6, rtol=1e-5)
    attention_mask = (text != 0).long()
    hidden = reference.text.transformer(input_ids=text, attention_mask=attention_mask).last_hidden_state
    torch.testing.assert_close(tokens[0], hidden[0], atol=1e-6, rtol=1e-5)
    synonyms = reference.encode_text(tokenizer(['A photo of a optic disc.', 'A photo of a optic cup.']), normalize=True)
    torch.testing.assert_close(pooled[1], F.normalize(synonyms.mean(0), dim=-1), atol=1e-6, rtol=1e-5)


def test_biomedclip_from_a_local_copy(offline_hub, tiny_biomedclip):
    hub = OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=None)
    local = OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=tiny_biomedclip['local'])
    for a, b in zip(hub(['cell']), local(['cell'])):
        assert torch.equal(a, b)
    by_dir = OpenCLIPTextEncoder(model_name='local-dir:' + tiny_biomedclip['local'], pretrained=None)
    assert torch.equal(by_dir(['cell'])[0], hub(['cell'])[0])


def test_biomedclip_features_are_fp32_under_autocast(offline_hub):
    reference = OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=None)(['nuclei'])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=None)(['nuclei'])
    assert torch.equal(amp[0], reference[0]) and torch.equal(amp[1], reference[1])


def test_missing_biomedclip_download_says_what_to_fetch(offline_hub, tiny_biomedclip, tmp_path, monkeypatch):
    local_dir_cmd = f'hf download {BIOMEDCLIP_REPO} --local-dir DIR'
    # nothing in the cache
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path / 'empty'))
    with pytest.raises(FileNotFoundError) as err:
        OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=None)
    assert local_dir_cmd in str(err.value) and 'model.text_encoder.pretrained' in str(err.value)
    # a local copy, but the BERT architecture config is not in the cache
    with pytest.raises(FileNotFoundError) as err:
        OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=tiny_biomedclip['local'])
    assert f'hf download {BERT_REPO}' in str(err.value) and 'model.text_encoder.pretrained' in str(err.value)
    # a directory that is not a copy of the repository
    with pytest.raises(FileNotFoundError, match='model.text_encoder.pretrained') as err:
        OpenCLIPTextEncoder(model_name='BiomedCLIP', pretrained=str(tmp_path))
    assert local_dir_cmd in str(err.value)
    with pytest.raises(ValueError, match='pretrained=None'):
        OpenCLIPTextEncoder(model_name='local-dir:' + str(tmp_path), pretrained='openai')


def test_tiny_digseg_with_biomedclip_text(offline_hub, tiny_cfg):
    """The head's text_proj maps BiomedCLIP's token width (here 32) to the U-Net's cross-attention width."""
    from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(tiny_cfg.model)  # tiny_cfg is shared by the whole session
    model_cfg.text_encoder = dict(type='OpenCLIPTextEncoder', model_name='BiomedCLIP', pretrained=None,
                                  templates='paper')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg).eval()
    assert model.decode_head.text_proj.in_features == 32
    scores = model.score_classes(torch.rand(1, 3, 64, 64) * 2 - 1, ['nucleus', 'background'])
    assert scores.shape[:2] == (1, 2) and torch.isfinite(scores).all()
