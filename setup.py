from setuptools import find_packages, setup

# The verified legacy OpenMMLab stack (see README "Install"): torch/torchvision come from the package
# index and mmcv is built from source by tools/install.sh before this file is installed.
install_requires = [
    'torch==2.13.0',
    'torchvision==0.28.0',
    'mmcv==2.1.0',
    'mmengine==0.10.7',
    'mmsegmentation==1.2.2',
    'mmpretrain==1.2.0',  # CLIP/ViT/ConvNeXt backbones of some MMSeg baselines
    'mmdet==3.3.0',  # Mask2Former baselines (accepts mmcv 2.1.0)
    'diffusers==0.42.1',
    'open_clip_torch==3.3.0',
    'ftfy',
    'setuptools>=77.0.3,<80',  # mmengine needs pkg_resources for `mmseg::` config bases
    'tqdm',
    'accelerate',  # diffusers' fast, low-memory loading of large checkpoints
]

setup(
    name='mmseg_digseg',
    version='0.1.0',
    description='DiGSeg: a diffusion model as a generalist, text-conditioned segmenter, for MMSegmentation',
    packages=find_packages(include=['mmseg_digseg', 'mmseg_digseg.*']),
    package_data={'mmseg_digseg': ['models/text_encoders/open_clip_configs/*.json', 'datasets/vocabularies/*.txt']},
    python_requires='>=3.11',
    install_requires=install_requires,
    extras_require={
        # BiomedCLIP's PubMedBERT text tower (open_clip's HF text encoder). transformers 5 is the only line
        # that accepts diffusers' huggingface_hub (4.x needs < 1.0, diffusers 0.42 >= 1.32); mmseg_digseg.compat
        # lets mmpretrain 1.2.0 import next to it (a start-up file that tools/install.sh writes, for MMSeg alone).
        'biomedclip': ['transformers==5.24.0'],
        'demo': ['gradio==6.31.0'],  # demo/gradio_app.py (tools/install_demo.sh adds its test tools)
        'tests': ['pytest', 'transformers==5.24.0'],  # the BiomedCLIP tests build a tiny model of that family
    },
)
