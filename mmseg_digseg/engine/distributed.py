"""Distributed runs: without CUDA (CPU tests, gloo), and FSDP for DiGSeg through mmengine's FlexibleRunner."""
import torch
from mmengine._strategy import FSDPStrategy
from mmengine.device import get_device
from mmengine.model import is_model_wrapper
from mmengine.registry import STRATEGIES
from torch.distributed.fsdp import FullyShardedDataParallel


@STRATEGIES.register_module()
class DiGSegFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` sharding only what trains: the frozen parts (``frozen_modules``, DiGSeg's
    VAE and text tower) stay whole on every device, outside FSDP (``ignored_modules``).

    Plain FSDPStrategy cannot wrap DiGSeg: FSDP refuses the text tower's 0-d ``logit_scale`` ("FSDP doesn't
    support scalar parameters. Change text_encoder.clip.logit_scale to a 1D tensor with numel equal to 1.")
    and would all-gather the frozen weights at every forward for nothing. FSDP moves only what it manages
    to the device, so the model is moved first. Resuming also fails in mmengine 0.10.7 with torch 2
    ("TypeError: unhashable type: 'dict'"), fixed here (``load_optim_state_dict``).

    Args:
        frozen_modules (list[str]): names of the model's children kept out of FSDP.
        Other arguments as ``FSDPStrategy``.
    """

    def __init__(self, *, frozen_modules=('backbone', 'text_encoder'), **kwargs):
        super().__init__(**kwargs)
        self.frozen_modules = list(frozen_modules)

    def _wrap_model(self, model):
        if is_model_wrapper(model):
            return model
        trained = [name for name in self.frozen_modules
                   if any(p.requires_grad for p in getattr(model, name).parameters())]
        if trained:
            raise ValueError(f'DiGSegFSDPStrategy keeps {trained} out of FSDP, but they have trainable parameters: '
                             'set strategy.frozen_modules to the frozen children only.')
        model.to(get_device())
        self.model_wrapper = dict(self.model_wrapper or {}, ignored_modules=self.frozen_modules)
        return super()._wrap_model(model)

    def load_optim_state_dict(self, state_dict: dict) -> None:
        # mmengine passes (state_dict, model, optimizer) positionally, torch 1.x's order; torch 2 takes
        # (model, optim, optim_state_dict)
        self.optim_wrapper.load_state_dict(FullyShardedDataParallel.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict))


def setup_cpu_distributed(cfg, launcher: str) -> None:
    """mmengine's init_dist calls torch.cuda.set_device, and its DDP wrapper passes device_ids=[LOCAL_RANK]:
    both fail without CUDA. There, start the process group with gloo ourselves (the Runner then skips
    init_dist) and let DDP wrap the CPU model with device_ids=None. Nothing changes on GPU machines.

    mmengine's FlexibleRunner (``runner_type = 'FlexibleRunner'``) takes its wrapper from ``cfg.strategy``:
    DDPStrategy (its default with a launcher) gets device_ids=None, the FSDP strategies device_id='cpu'
    (FSDP's default device is the accelerator: "FSDP needs a non-CPU accelerator device" without one) and,
    for ``state_dict_cfg='full'``, the full state dict without ``offload_to_cpu`` (the tensors are on the CPU
    already; with it, torch 2.13's FSDP ends the process with SIGSEGV while gathering them on gloo)."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    if cfg.get('runner_type') != 'FlexibleRunner':
        cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'),
                                     device_ids=None)
        return
    strategy = cfg.get('strategy') or dict(type='DDPStrategy')
    if strategy['type'] in ('FSDPStrategy', 'DiGSegFSDPStrategy'):
        strategy['model_wrapper'] = dict(strategy.get('model_wrapper') or {}, device_id='cpu')
        if strategy.get('state_dict_cfg') == 'full':
            strategy['state_dict_cfg'] = dict(
                state_dict_type='FULL_STATE_DICT',
                state_dict_config=dict(type='FullStateDictConfig', rank0_only=True),
                optim_state_dict_config=dict(type='FullOptimStateDictConfig', rank0_only=True))
    elif strategy['type'] == 'DDPStrategy':
        strategy['model_wrapper'] = dict(
            strategy.get('model_wrapper') or dict(type='MMDistributedDataParallel', broadcast_buffers=False),
            device_ids=None)
    cfg.strategy = strategy


def finish_distributed() -> None:
    """Destroy the process group before the interpreter shuts down. Without it, gloo's worker threads can
    still hold tensors during interpreter finalisation and the process aborts at exit ("terminate called
    without an active exception", SIGABRT) after a successful run; NCCL warns about the same. The barrier
    first: a rank that tears its group down while a peer is still in the last collective aborts the same way
    (seen once in CI on 2 loaded cores)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
