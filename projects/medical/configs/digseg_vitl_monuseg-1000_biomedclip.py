# Table 5's third row: the same model with BiomedCLIP's text tower (PubMedBERT) as the text encoder;
# nothing else changes (the head's text projection maps its width to the U-Net's cross-attention width).
# Weights: open_clip's Hub model, or a local copy (hf download microsoft/BiomedCLIP-PubMedBERT_256-
# vit_base_patch16_224 --local-dir DIR) with `export DIGSEG_BIOMEDCLIP=DIR` or
# --cfg-options model.text_encoder.pretrained=DIR.
#   bash tools/dist_train.sh projects/medical/configs/digseg_vitl_monuseg-1000_biomedclip.py 8
#   python tools/test.py projects/medical/configs/digseg_vitl_monuseg-1000_biomedclip.py CKPT
_base_ = ['./digseg_vitl_monuseg-1000.py']
biomedclip_dir = '{{$DIGSEG_BIOMEDCLIP:hub}}'  # 'hub' (unset): open_clip downloads it from the Hugging Face Hub
model = dict(
    text_encoder=dict(
        _delete_=True,
        type='OpenCLIPTextEncoder',
        model_name='hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224',
        pretrained=None if biomedclip_dir == 'hub' else biomedclip_dir,
        templates='vild'))
