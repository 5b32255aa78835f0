#!/usr/bin/env bash
# The browser demo's extras, after tools/install.sh: Gradio (the `demo` extra of setup.py), gradio_client and
# Selenium for its tests, and Debian's Chromium + chromedriver, so the browser test downloads nothing at run time.
#   bash tools/install_demo.sh        # as root (apt); SKIP_APT=1 for the Python packages only
set -euo pipefail
cd "$(dirname "$0")/.."
[ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ] && source .venv/bin/activate

if [ -z "${SKIP_APT:-}" ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "[install_demo] chromium + chromium-driver (apt)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
  fi
fi

echo "[install_demo] gradio (the demo extra), gradio_client, selenium"
python -m pip install -q -e ".[demo]" gradio_client==2.7.2 selenium==4.51.0

python - <<'PY'
import gradio, gradio_client, selenium
print(f'[install_demo] ok: gradio {gradio.__version__}, gradio_client {gradio_client.__version__}, '
      f'selenium {selenium.__version__}')
PY
command -v chromium >/dev/null && chromium --version || echo "[install_demo] no chromium: the browser test will skip (fail under CI=true)"
