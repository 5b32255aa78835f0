# The embedded default: the same classes as Stable Diffusion + CLIP, built small.
# - VAE: fitted once by tools/fit_tiny_vae.py, kept in checkpoints/tiny_sd/vae (diffusers layout) and
#   loaded exactly like Stable Diffusion's; 16 latent channels at 1/4 resolution (64x64 -> 16x16).
# - Text tower: open_clip 'DiGSeg-Tiny-CLIP' (shipped config), seeded random weights.
# - U-Net: a small UNet2DConditionModel built from this config; conv_in is widened 16 -> 32 ([image,
#   noisy mask] latents) as SD's 4 -> 8.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],  # images in [-1, 1], as the VAE expects
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=8)  # batches of different sizes are padded (and the prediction cropped back)

model = dict(
    type='DiGSeg',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='LatentVAE', pretrained='checkpoints/tiny_sd'),
    text_encoder=dict(type='OpenCLIPTextEncoder', model_name='DiGSeg-Tiny-CLIP', pretrained=None),
    decode_head=dict(
        type='DiffusionMaskHead',
        unet_cfg=dict(
            sample_size=16,
            in_channels=16,  # the tiny VAE's latent channels (widened to 2x for [image, mask] latents)
            out_channels=16,
            down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'),
            up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'),
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            cross_attention_dim=64,
            # attention heads per block (diffusers' legacy name): head width 16, as SD keeps its heads wide
            # (64). Eight heads of 4-8 channels made CPU attention half of the U-Net's step (0.40 -> 0.22 s
            # forward + backward for 24 pairs: tools/analysis_tools/train_step_profile.py, docs/embedded_default.md)
            attention_head_dim=(2, 4, 4),
            norm_num_groups=16),
        scheduler_cfg=dict(
            num_train_timesteps=1000,
            beta_schedule='scaled_linear',
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type='v_prediction',
            rescale_betas_zero_snr=True,
            timestep_spacing='trailing',
            clip_sample=False)),
    # a cheap readout of mask latents, trained beside the U-Net (its gradients never reach it); used with
    # test_cfg.mask_readout='learned' instead of the full VAE decode (docs/benchmarks.md)
    mask_readout=dict(type='LatentMaskReadout', hidden_channels=64),
    class_names=None,  # the dataset's classes
    # single_step learned faster than denoising at the same wall time here (docs/history.md, docs/paper_recipe.md). Every class of the
    # vocabulary for every image, and a per-pixel cross-entropy across them next to BCE + Dice: training
    # compares classes as inference's argmax does (docs/history.md: 29.3 -> 31.1 mIoU on the old
    # 4-channel VAE, 75.9 with the 16-channel one). (image, class) pairs a step: images x classes.
    train_cfg=dict(objective='single_step', num_positive=None, num_negative=None,
                   loss_weights=dict(bce=1.0, dice=1.0, ce=1.0)),
    test_cfg=dict(num_steps=1, ensemble_size=1, init_noise='zeros', class_chunk_size=16))
