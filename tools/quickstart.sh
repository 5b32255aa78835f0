#!/usr/bin/env bash
# The embedded default end to end on CPU: make SynthShapes, fine-tune DiGSeg-tiny from the pretrained tiny
# U-Net with the paper configs' denoising recipe, test it, write overlays.
#   bash tools/quickstart.sh [WORK_DIR]      (default work_dirs/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ] && source .venv/bin/activate
WORK_DIR=${1:-work_dirs/quickstart}
CONFIG=configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py
start=$(date +%s)

python tools/dataset_converters/make_synth_shapes.py --out data/synth_shapes
# no end-of-training validation (mmengine runs it at the last iteration whatever val_interval says):
# the test below evaluates the same images and writes the overlays
python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --cfg-options val_cfg=None val_dataloader=None val_evaluator=None
trained=$(date +%s)
python tools/test.py "$CONFIG" "$(cat "$WORK_DIR/last_checkpoint")" --work-dir "$WORK_DIR/test" \
    --show-dir "$WORK_DIR/overlays" 2>&1 | tee "$WORK_DIR/test.log"
end=$(date +%s)

echo
echo "Quickstart done: train $((trained - start)) s, test $((end - trained)) s, total $((end - start)) s."
grep -E "^\|" "$WORK_DIR/test.log" | tail -n 12 || true
grep -oE "mIoU: [0-9.]+" "$WORK_DIR/test.log" | tail -n 1
echo "Overlays (image | ground truth | prediction): $(find "$WORK_DIR/overlays" -name '*.png' | head -n 1 | xargs dirname)"
