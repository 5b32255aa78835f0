"""tools/analysis_tools/oracle_text.py: per-word prompt features, the analysis stand-in for a trained CLIP."""
import itertools
import os.path as osp
import sys

import torch

from ..conftest import REPO_ROOT


def oracle():
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    try:
        from analysis_tools.oracle_text import OracleWordText
    finally:
        sys.path.remove(osp.join(REPO_ROOT, 'tools'))
    return OracleWordText(dim=64, context_length=16)


def test_classes_sharing_a_word_share_its_feature_and_no_more():
    from mmseg_digseg.datasets.synth_shapes import MANY_CLASSES
    names = list(MANY_CLASSES[1:])  # '<texture> <shape>'
    pooled, tokens = oracle()(names)
    assert pooled.shape == (48, 64) and tokens.shape == (48, 16, 64)
    torch.testing.assert_close(pooled.norm(dim=1), torch.ones(48))
    first, second = names.index('dotted disc'), names.index('dotted square')
    assert torch.equal(tokens[first, 1], tokens[second, 1])  # "dotted"
    assert not torch.equal(tokens[first, 2], tokens[second, 2])  # "disc" / "square"
    assert torch.equal(tokens[first, 3:], tokens[second, 3:])  # padding
    shared, unrelated = [], []
    for i, j in itertools.combinations(range(48), 2):
        texture_i, shape_i = names[i].rsplit(' ', 1)
        texture_j, shape_j = names[j].rsplit(' ', 1)
        cosine = float(pooled[i] @ pooled[j])
        if (texture_i == texture_j) != (shape_i == shape_j):
            shared.append(cosine)
        elif texture_i != texture_j and shape_i != shape_j:
            unrelated.append(cosine)
    # one word of two (or of three) in common: about 0.5; none: about 0 (independent random directions)
    assert 0.3 < sum(shared) / len(shared) < 0.65
    assert abs(sum(unrelated) / len(unrelated)) < 0.05
    again, _ = oracle()(names)  # seeded by the words: the same features in every process
    assert torch.equal(again, pooled)
