"""Compatibility with the newest libraries next to the verified legacy OpenMMLab stack."""


def patch_transformers_for_mmpretrain() -> None:
    """Let mmpretrain 1.2.0 import next to transformers 5 (BiomedCLIP's text tower needs transformers).

    diffusers 0.42 needs huggingface_hub >= 1.x, which only transformers 5 accepts; mmpretrain 1.2.0 (its
    last release, reached through MMSeg's model imports) imports three names that transformers 5 moved or
    removed from ``transformers.modeling_utils`` (and three its OFA model imports from there). Put them
    back before MMSeg's models are imported. A no-op without transformers.
    """
    try:
        import transformers
        import transformers.modeling_utils as modeling_utils
        import transformers.pytorch_utils as pytorch_utils
    except ImportError:
        return
    for name in ('apply_chunking_to_forward', 'prune_linear_layer'):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(pytorch_utils, name))
    for name in ('GenerationConfig', 'GenerationMixin', 'PretrainedConfig'):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(transformers, name))
    if not hasattr(modeling_utils, 'find_pruneable_heads_and_indices'):

        def find_pruneable_heads_and_indices(*args, **kwargs):
            raise NotImplementedError('find_pruneable_heads_and_indices was removed in transformers 5.')

        modeling_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices
