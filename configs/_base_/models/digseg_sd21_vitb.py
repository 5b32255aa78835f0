# DiGSeg on Stable Diffusion 2.1-base with the open_clip ViT-B/16 (OpenAI) text tower (token width 512,
# mapped to the U-Net's 1024 by text_proj). Local text weights: export DIGSEG_CLIP_B16=/path/to/file.bin
_base_ = './digseg_sd21_vitl.py'

# quick_gelu: OpenAI's ViT-B/16 was trained with QuickGELU (open_clip builds ViT-B-16 with GELU)
model = dict(text_encoder=dict(model_name='ViT-B-16', pretrained='{{$DIGSEG_CLIP_B16:openai}}', quick_gelu=True,
                               templates='paper'))
