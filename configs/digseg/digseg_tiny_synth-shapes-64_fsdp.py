# DiGSeg-tiny trained through mmengine's FlexibleRunner with PyTorch FSDP (docs/zoo.md, "FSDP"); the same
# lines turn a paper config into an FSDP run (inherit it instead).
#   bash tools/dist_train.sh configs/digseg/digseg_tiny_synth-shapes-64_fsdp.py 2
_base_ = ['./digseg_tiny_synth-shapes-64.py']
runner_type = 'FlexibleRunner'
strategy = dict(
    # FSDPStrategy that shards the trained U-Net (and readout) and keeps the frozen VAE and text tower
    # whole on every device: plain FSDPStrategy refuses the text tower (mmseg_digseg/engine/distributed.py)
    type='DiGSegFSDPStrategy',
    model_wrapper=dict(
        # one FSDP unit per U-Net block of at least this many parameters, the rest in the root unit (the
        # paper configs' U-Net blocks hold 10-100 M parameters: min_num_params=int(1e7) there)
        auto_wrap_policy=dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy', min_num_params=100000),
        use_orig_params=True),  # the optimizer and checkpoints see the model's own parameters
    # checkpoints as DDP's: one file with the full state dict, gathered on rank 0 (loads anywhere, unsharded too)
    state_dict_cfg='full')
