"""Runner hooks: the vocabulary agrees with the dataset, and training stops on a non-finite loss."""
import math

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper

from mmseg.registry import HOOKS
from ..models.segmentors import DiGSeg


def _unwrap(model):
    model = model.module if is_model_wrapper(model) else model
    return getattr(model, 'module', model)  # SegTTAModel wraps the segmentor too


@HOOKS.register_module()
class DiGSegVocabularyHook(Hook):
    """Check the model's vocabulary against the dataset's classes before each loop.

    A model without ``class_names`` takes the dataset's classes; one whose vocabulary has a different
    size would produce labels that do not index the dataset's classes, so it is an error.
    """
    priority = 'VERY_HIGH'

    def _check(self, runner, loop_name):
        loop = getattr(runner, loop_name)
        classes = loop.dataloader.dataset.metainfo.get('classes')
        model = _unwrap(runner.model)
        if not classes or not isinstance(model, DiGSeg):
            return
        classes = list(classes)
        if model._class_names is None:
            model.dataset_meta = dict(loop.dataloader.dataset.metainfo)
            return
        names = model.class_names
        if len(names) != len(classes):
            raise ValueError(
                f'The model vocabulary has {len(names)} classes but the {loop_name.replace("_loop", "")} '
                f'dataset has {len(classes)} ({type(loop.dataloader.dataset).__name__}). Set '
                f'`model.class_names=None` to use the dataset\'s classes, or give one name per dataset '
                f'class, in the dataset\'s order.')
        renamed = [(n, c) for n, c in zip(names, classes) if n.split(',')[0].strip() != c]
        if renamed:
            print_log(f'Vocabulary names differ from the dataset\'s for {len(renamed)} classes, e.g. '
                      f'{renamed[:3]}; labels follow the position in `class_names`.', 'current', 30)

    def before_train(self, runner):
        self._check(runner, 'train_loop')

    def before_val(self, runner):
        self._check(runner, 'val_loop')

    def before_test(self, runner):
        self._check(runner, 'test_loop')
        model = _unwrap(runner.model)
        wrapper = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if isinstance(model, DiGSeg) and isinstance(wrapper, BaseTTAModel) and not model.test_cfg['return_logits']:
            raise ValueError('Test-time augmentation averages per-class logits over views, but '
                             'model.test_cfg.return_logits=False keeps only label maps. Drop --tta, or set '
                             '--cfg-options model.test_cfg.return_logits=True (memory then grows with the '
                             'vocabulary; model.test_cfg.topk_classes=K bounds the work).')


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Stop training at the first NaN or infinite loss, naming the iteration and what to try."""
    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        loss = (outputs or {}).get('loss')
        if loss is None:
            return
        value = float(loss.detach() if hasattr(loss, 'detach') else loss)
        if not math.isfinite(value):
            raise FloatingPointError(
                f'The loss became {value} at iteration {runner.iter + 1}. Lower the learning rate '
                f'(optim_wrapper.optimizer.lr), add gradient clipping (optim_wrapper.clip_grad=dict('
                f'max_norm=1.0)) or use bf16 instead of fp16, then continue from the last good '
                f'checkpoint with --resume.')
