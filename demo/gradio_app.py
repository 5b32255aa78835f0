"""DiGSeg in the browser: upload an image, type the classes, see the overlay and one score map per class.

    pip install -e ".[demo]"                       # or: bash tools/install_demo.sh
    python demo/gradio_app.py                      # the quickstart's model (bash tools/quickstart.sh)
    python demo/gradio_app.py --config CONFIG --checkpoint CHECKPOINT [--device cuda] [--port 7860]

Serves on http://127.0.0.1:7860 (local only, no share link, analytics off). The same function is an API
endpoint, ``/segment`` (image, classes, preset, mask readout -> overlay, score maps, summary), for
``gradio_client``.
"""
import argparse
import os
import os.path as osp
import sys

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # before gradio is imported

import gradio as gr  # noqa: E402

from mmseg_digseg.apis import init_digseg, render_result, segment  # noqa: E402
from mmseg_digseg.models.segmentors.digseg import INFERENCE_PRESETS  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the config tools/quickstart.sh trains
QUICKSTART_CONFIG = osp.join(REPO_ROOT, 'configs/digseg/digseg_tiny-pretrained_synth-shapes-64.py')
QUICKSTART_POINTER = osp.join(REPO_ROOT, 'work_dirs/quickstart/last_checkpoint')  # written by tools/train.py
CONFIG_DEFAULT = 'config default'


def quickstart_checkpoint() -> str:
    """The checkpoint tools/quickstart.sh trained last, or a SystemExit that says how to make it."""
    path = open(QUICKSTART_POINTER).read().strip() if osp.isfile(QUICKSTART_POINTER) else ''
    path = path if osp.isabs(path) or not path else osp.join(REPO_ROOT, path)  # train.py ran at the repo root
    if not osp.isfile(path):
        raise SystemExit(f'No --checkpoint given and the quickstart\'s is not there ({QUICKSTART_POINTER} names '
                         'none). Make it with `bash tools/quickstart.sh` (about 7 minutes on CPU), or pass '
                         '--config CONFIG --checkpoint CHECKPOINT.')
    return path


def parse_classes(text: str) -> list:
    classes = [c.strip() for c in (text or '').split('|' if '|' in (text or '') else ',')]
    if not all(classes):
        raise gr.Error(f'The classes "{text}" hold an empty name: type comma-separated names, e.g. "cat, sofa".')
    return classes


def default_classes(model) -> str:
    """The checkpoint's own classes for the text box, or nothing if it has none."""
    try:
        return ', '.join(model.class_names)
    except RuntimeError:  # no vocabulary in the config or the checkpoint
        return ''


class SegmentationDemo:
    """The model and the one function the page (and the API) calls. Each call starts from the config's
    test_cfg, so a preset or readout chosen once does not stick to the next call."""

    def __init__(self, model):
        self.model = model
        self.defaults = dict(model.test_cfg)
        self.readouts = ['vae', 'learned'] if getattr(model, 'mask_readout', None) is not None else ['vae']

    def segment(self, image, classes_text, preset, readout):
        """(RGB image, 'a, b, c', preset, readout) -> (overlay with legend, [(score map, class)], summary)."""
        if image is None:
            raise gr.Error('Upload an image first.')
        classes = parse_classes(classes_text)
        if readout not in self.readouts:
            raise gr.Error(f'Mask readout {readout!r} is not available for this model; choose {self.readouts}.')
        cfg = self.model.test_cfg
        cfg.clear()
        cfg.update(self.defaults, return_logits=True, mask_readout=readout)
        if preset and preset != CONFIG_DEFAULT:
            cfg.update(INFERENCE_PRESETS[preset])
        bgr = image[..., ::-1].copy()  # gradio gives RGB; segment() takes BGR like mmcv.imread
        try:
            result = segment(self.model, bgr, classes)
        except (RuntimeError, ValueError) as error:  # e.g. the learned readout of a checkpoint without it
            raise gr.Error(str(error))
        overlay, maps, present = render_result(self.model, bgr, result, classes)
        summary = (f'{len(classes)} classes, preset {preset}, readout {readout}: '
                   f'labels present: {", ".join(present)}')
        return overlay, list(zip(maps, classes)), summary


def build_demo(model) -> gr.Blocks:
    app = SegmentationDemo(model)
    presets = [CONFIG_DEFAULT] + list(INFERENCE_PRESETS)
    with gr.Blocks(title='DiGSeg demo') as demo:
        gr.Markdown('# DiGSeg: segment an image with any classes\nUpload an image, type the classes (comma '
                    'separated), and press **Segment**. Each class gets its own score map (0 dark blue, 1 yellow); '
                    'the overlay shows the best class per pixel.')
        with gr.Row():
            with gr.Column():
                image = gr.Image(type='numpy', image_mode='RGB', sources=['upload'], label='Image',
                                 elem_id='input-image')
                classes = gr.Textbox(value=default_classes(model), label='Classes (comma separated)',
                                     elem_id='classes')
                preset = gr.Dropdown(presets, value=CONFIG_DEFAULT, label='Preset (ensemble size x steps)')
                readout = gr.Radio(app.readouts, value=model.test_cfg['mask_readout'], label='Mask readout')
                button = gr.Button('Segment', variant='primary', elem_id='segment')
            with gr.Column():
                overlay = gr.Image(type='numpy', format='png', label='Overlay', interactive=False, elem_id='overlay')
                scores = gr.Gallery(label='Score maps', columns=4, format='png', elem_id='score-maps')
                summary = gr.Markdown(elem_id='summary')
        button.click(app.segment, [image, classes, preset, readout], [overlay, scores, summary], api_name='segment')
    return demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='DiGSeg Gradio demo')
    parser.add_argument('--config', help='default: the quickstart config (with its checkpoint)')
    parser.add_argument('--checkpoint', help='default: the quickstart\'s last checkpoint')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--server-name', default='127.0.0.1', help='0.0.0.0 to serve other machines too')
    parser.add_argument('--port', type=int, default=7860)
    return parser.parse_args(argv)


def load_model(args):
    """The model of --config/--checkpoint, or the quickstart's when neither is given."""
    if args.config and not args.checkpoint:
        raise SystemExit('--config needs --checkpoint: give both, or neither for the quickstart model.')
    config = args.config or QUICKSTART_CONFIG
    checkpoint = args.checkpoint or quickstart_checkpoint()
    print(f'Loading {config} with {checkpoint}', file=sys.stderr)
    return init_digseg(config, checkpoint, device=args.device)


def main(argv=None):
    args = parse_args(argv)
    build_demo(load_model(args)).launch(server_name=args.server_name, server_port=args.port, share=False)


if __name__ == '__main__':
    main()
