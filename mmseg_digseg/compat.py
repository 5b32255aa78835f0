"""Compatibility with the newest libraries next to the verified legacy OpenMMLab stack.

Only the standard library is imported here: tools/install.sh runs this file as a script
(``python mmseg_digseg/compat.py``) to write a start-up file into site-packages, and that file loads this one
at every interpreter start, so that MMSeg's own entry points work without importing mmseg_digseg first.
"""
import importlib.abc
import os.path as osp
import sys
import sysconfig
from typing import Optional

# OpenMMLab packages whose imports reach the names transformers 5 took out of transformers.modeling_utils:
# mmpretrain 1.2.0 crashes at import without them ("NoneType takes no arguments"), and every MMSeg model import
# reaches it (mmseg.models -> Mask2Former head -> mmdet.models -> mmdet's ReID preprocessor -> mmpretrain.models);
# mmdet's GLIP fusion falls back to stubs without them.
PATCH_BEFORE = ('mmpretrain', 'mmdet')
STARTUP_FILE = 'mmseg_digseg_compat.pth'


def patch_transformers_for_mmpretrain() -> None:
    """Let mmpretrain 1.2.0 import next to transformers 5 (BiomedCLIP's text tower needs transformers).

    diffusers 0.42 needs huggingface_hub >= 1.x, which only transformers 5 accepts; mmpretrain 1.2.0 (its
    last release, reached through MMSeg's model imports) imports three names that transformers 5 moved or
    removed from ``transformers.modeling_utils`` (and three its OFA model imports from there). Put them
    back before MMSeg's models are imported. A no-op without transformers.
    """
    try:
        import transformers
        import transformers.modeling_utils as modeling_utils
        import transformers.pytorch_utils as pytorch_utils
    except ImportError:
        return
    for name in ('apply_chunking_to_forward', 'prune_linear_layer'):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(pytorch_utils, name))
    for name in ('GenerationConfig', 'GenerationMixin', 'PretrainedConfig'):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(transformers, name))
    if not hasattr(modeling_utils, 'find_pruneable_heads_and_indices'):

        def find_pruneable_heads_and_indices(*args, **kwargs):
            raise NotImplementedError('find_pruneable_heads_and_indices was removed in transformers 5.')

        modeling_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices


class PatchTransformersOnImport(importlib.abc.MetaPathFinder):
    """Patches transformers the first time mmpretrain or mmdet is imported, so that a plain Python (no
    mmseg_digseg import) pays for the transformers import only when MMSeg's models are imported.

    It finds nothing itself: the usual finders then import the package as always.
    """

    def __init__(self):
        self.patched = False

    def find_spec(self, fullname, path=None, target=None):
        if not self.patched and fullname in PATCH_BEFORE:
            self.patched = True  # first, since importing transformers comes back through this finder
            patch_transformers_for_mmpretrain()
        return None


def install_import_hook() -> None:
    """Put the patching finder first on ``sys.meta_path`` (once; the start-up file calls this)."""
    if not any(type(finder).__name__ == PatchTransformersOnImport.__name__ for finder in sys.meta_path):
        sys.meta_path.insert(0, PatchTransformersOnImport())


def startup_line(compat_file: str) -> str:
    """The ``.pth`` line that loads ``compat_file`` without its package and installs the hook; it does
    nothing once that file is gone (say, after ``pip uninstall mmseg_digseg``)."""
    return ("import os, importlib.util as u; p = {!r}; s = os.path.exists(p) and "
            "u.spec_from_file_location('mmseg_digseg_compat', p); m = s and u.module_from_spec(s); "
            "s and (s.loader.exec_module(m), m.install_import_hook())").format(compat_file)


def write_startup_file(site_dir: Optional[str] = None) -> str:
    """Write ``mmseg_digseg_compat.pth`` into ``site_dir`` (default: this environment's site-packages)."""
    site_dir = site_dir or sysconfig.get_paths()['purelib']
    path = osp.join(site_dir, STARTUP_FILE)
    with open(path, 'w') as f:
        f.write('# mmseg_digseg (tools/install.sh): let mmpretrain 1.2.0 import next to transformers 5 without '
                'importing mmseg_digseg first; see mmseg_digseg/compat.py\n')
        f.write(startup_line(osp.abspath(__file__)) + '\n')
    return path


if __name__ == '__main__':
    print(f'[install] wrote {write_startup_file()}')
