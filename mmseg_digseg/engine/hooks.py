"""Runner hooks: the vocabulary agrees with the dataset, inference cost is logged, training stops on a
non-finite loss, and a searched binary threshold stays with the weights it was searched for."""
import math

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper

from mmseg.registry import HOOKS
from ..evaluation import BinarySegMetric
from ..evaluation.metrics.binary_metric import CHECKPOINT_META_KEY, search_summary, weights_name
from ..models.segmentors import DiGSeg


def _unwrap(model):
    model = model.module if is_model_wrapper(model) else model
    return getattr(model, 'module', model)  # SegTTAModel wraps the segmentor too


def num_tta_views(dataset) -> int:
    """Views per image of a dataset whose pipeline has a ``TestTimeAug`` (1 without)."""
    for transform in getattr(dataset.pipeline, 'transforms', []):
        if hasattr(transform, 'subroutines'):  # mmcv's TestTimeAug: one Compose per view
            return len(transform.subroutines)
    return 1


def inference_cost(model: DiGSeg, num_views: int = 1, num_windows: int = 1) -> dict:
    """U-Net passes, VAE decodes, learned readouts and encodes per image (``model.cost_per_view``), TTA
    views included."""
    return {k: v * num_views for k, v in model.cost_per_view(num_windows).items()}


def log_inference_cost(runner, loop_name):
    model = _unwrap(runner.model)
    if not isinstance(model, DiGSeg):
        return
    dataset = getattr(runner, loop_name).dataloader.dataset
    views, cfg = num_tta_views(dataset), model.test_cfg
    cost = inference_cost(model, views)
    windows = ' per window (test_cfg.mode=slide)' if cfg['mode'] == 'slide' else ''
    print_log(
        f'{loop_name.replace("_loop", "").capitalize()}: {len(dataset)} images, {len(model.class_names)} classes, '
        f'{views} view(s), ensemble {cfg["ensemble_size"]} x {cfg["num_steps"]} step(s): {cost["unet"]} U-Net '
        f'passes and {cost["decodes"]} VAE decodes ({cost["readouts"]} learned readouts) per image{windows}. '
        f'Fewer: test_cfg.topk_classes, test_cfg.mask_readout=learned, a smaller preset, no --tta; during '
        f'training, a larger train_cfg.val_interval.', 'current')


@HOOKS.register_module()
class DiGSegVocabularyHook(Hook):
    """Check the model's vocabulary against the dataset's classes before each loop.

    A model without ``class_names`` takes the dataset's classes; one whose vocabulary has a different
    size would produce labels that do not index the dataset's classes, so it is an error. Validation may
    use other classes than training (a held-out class): after it the training vocabulary is restored, so
    training never sees the validation names. Before validation and testing, the cost per image (U-Net
    passes and VAE decodes, TTA views included) is logged.
    """
    priority = 'VERY_HIGH'
    _train_meta = None

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
        model = _unwrap(runner.model)
        if isinstance(model, DiGSeg):
            self._train_meta = getattr(model, 'dataset_meta', None)

    def before_val(self, runner):
        self._check(runner, 'val_loop')
        log_inference_cost(runner, 'val_loop')

    def after_val(self, runner):
        model = _unwrap(runner.model)
        if self._train_meta is not None and isinstance(model, DiGSeg):
            model.dataset_meta = self._train_meta

    def before_test(self, runner):
        self._check(runner, 'test_loop')
        log_inference_cost(runner, 'test_loop')
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


def binary_metrics(loop) -> list:
    """The ``BinarySegMetric``s of a loop's evaluator."""
    return [m for m in getattr(getattr(loop, 'evaluator', None), 'metrics', []) if isinstance(m, BinarySegMetric)]


@HOOKS.register_module()
class BinaryThresholdHook(Hook):
    """Keep a ``BinarySegMetric`` threshold with the weights it was searched for.

    Before each validation and test, the loop's BinarySegMetrics learn which weights they evaluate: the
    loaded checkpoint's (its meta's ``experiment_name`` and ``iter``, and the search stored in it) until
    training changes them, else the Runner's own (``experiment_name``, ``iter``). A search records its
    threshold under those weights in the threshold file, and a checkpoint saved right after the search of
    its own weights (``save_best`` saves after validation) also carries it in its meta, so the file is not
    needed to test it. Interval checkpoints (``iter_N.pth``) are saved before their iteration's validation:
    ``threshold='from_file'`` finds theirs in the file, by name.
    """
    priority = 'NORMAL'

    def __init__(self):
        self._loaded = None  # the loaded checkpoint's weights, until a training iteration changes them
        self._val_metrics = []

    def after_load_checkpoint(self, runner, checkpoint):
        meta = checkpoint.get('meta') or {}
        self._loaded = dict(experiment_name=meta.get('experiment_name'), iter=meta.get('iter'),
                            record=meta.get(CHECKPOINT_META_KEY))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._loaded = None

    def _weights(self, runner) -> dict:
        if self._loaded is not None:
            return self._loaded
        return dict(experiment_name=runner.experiment_name, iter=runner.iter, record=None)

    def before_val(self, runner):
        self._val_metrics = binary_metrics(runner.val_loop)
        for metric in self._val_metrics:
            metric.set_weights(self._weights(runner))

    def before_test(self, runner):
        for metric in binary_metrics(runner.test_loop):
            metric.set_weights(self._weights(runner))

    def before_save_checkpoint(self, runner, checkpoint):
        meta = checkpoint['meta']
        for metric in self._val_metrics:
            if metric.last_search and weights_name(metric.last_search) == weights_name(meta):
                meta[CHECKPOINT_META_KEY] = search_summary(metric.last_search)
                return
