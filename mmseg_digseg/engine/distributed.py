"""Distributed runs without CUDA (CPU tests, gloo)."""
import torch


def setup_cpu_distributed(cfg, launcher: str) -> None:
    """mmengine's init_dist calls torch.cuda.set_device, and its DDP wrapper passes device_ids=[LOCAL_RANK]:
    both fail without CUDA. There, start the process group with gloo ourselves (the Runner then skips
    init_dist) and let DDP wrap the CPU model with device_ids=None. Nothing changes on GPU machines."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'),
                                 device_ids=None)


def finish_distributed() -> None:
    """Destroy the process group before the interpreter shuts down. Without it, gloo's worker threads can
    still hold tensors during interpreter finalisation and the process aborts at exit ("terminate called
    without an active exception", SIGABRT) after a successful run; NCCL warns about the same."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
