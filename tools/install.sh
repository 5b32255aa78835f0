#!/usr/bin/env bash
# One-command install of mmseg_digseg and its verified legacy OpenMMLab stack (Python 3.11, CPU or CUDA).
#   bash tools/install.sh          # creates .venv/ unless a virtual environment is already active
# Re-running it on an installed machine only checks and finishes in about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  PY=${PYTHON:-python3.11}
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
echo "[install] python: $(command -v python) ($(python --version))"
python -c 'import sys; assert sys.version_info[:2] == (3, 11), "mmseg_digseg is verified on Python 3.11"'

# setuptools < 80 keeps pkg_resources, which mmengine needs for `mmseg::` config bases;
# torch 2.13 asks for >= 77.0.3.
python -m pip install -q "setuptools>=77.0.3,<80" wheel ninja

# torch/torchvision from the package index: a local find-links torch build can shadow the index one
# and break torchvision ("operator torchvision::nms does not exist").
if ! python -c 'import torch, torchvision; assert torch.__version__.startswith("2.13.0"); assert torchvision.__version__.startswith("0.28.0")' 2>/dev/null; then
  echo "[install] torch 2.13.0 + torchvision 0.28.0"
  env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null python -m pip install -q torch==2.13.0 torchvision==0.28.0 "setuptools>=77.0.3,<80"
fi

# mmcv 2.1.0 with its compiled ops, built against this torch (about 20 min on 2 cores; pip caches the wheel).
if ! python -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  echo "[install] building mmcv 2.1.0 from source (about 20 minutes on 2 cores)"
  MAX_JOBS=${MAX_JOBS:-$(nproc)} python -m pip install -q --no-build-isolation mmcv==2.1.0
fi

echo "[install] mmseg_digseg and the rest"
python -m pip install -q -e ".[tests]"

# transformers 5 (the only line diffusers' huggingface_hub allows; BiomedCLIP and the tests need it) took
# names out of transformers.modeling_utils that mmpretrain 1.2.0 imports, and MMSeg's models import
# mmpretrain (Mask2Former head -> mmdet). A start-up file in site-packages (mmseg_digseg_compat.pth, written
# by mmseg_digseg/compat.py) puts them back when mmpretrain or mmdet is first imported, so that MMSeg's own
# entry points work without importing mmseg_digseg first. Remove that file to undo it.
python mmseg_digseg/compat.py

python - <<'PY'
import mmcv.ops, open_clip, diffusers, mmseg, mmengine, torch
from mmseg.utils import register_all_modules
register_all_modules()  # MMSeg on its own (all its models, mmdet's and mmpretrain's too), before mmseg_digseg
import mmseg_digseg
print(f'[install] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, '
      f'mmseg {mmseg.__version__}, diffusers {diffusers.__version__}, open_clip {open_clip.__version__}, '
      f'mmseg_digseg {mmseg_digseg.__version__}')
PY
