"""The pinned vocabularies: counts, well-formed lines, and line i = class i of the dataset's labels."""
import pytest
from mmseg.datasets import ADE20KDataset, CityscapesDataset, COCOStuffDataset, PascalContextDataset59

from mmseg_digseg.datasets.vocabularies import load_vocabulary

# name -> the MMSeg dataset whose METAINFO classes give the label order (None: no MMSeg dataset)
VOCABULARIES = {
    'ade20k_150': (150, ADE20KDataset),
    'pascal_context_59': (59, PascalContextDataset59),
    'coco_stuff_171': (171, COCOStuffDataset),
    'cityscapes_19': (19, CityscapesDataset),
    'pascal_context_459': (459, None),
}

# Genuine naming differences: MMSeg glues words that the vocabulary writes apart.
MMSEG_NAME_EXCEPTIONS = {
    ('pascal_context_59', 'pottedplant'): 'potted plant',
    ('pascal_context_59', 'tvmonitor'): 'tv monitor',
    ('coco_stuff_171', 'playingfield'): 'playing field',
}

# 1-based PASCAL-Context-459 ids of the 59 classes, as in MMSeg's tools/dataset_converters/pascal_context.py
# (its sorted ``_mapping`` without the leading 0); their order is the 59-class label order.
PC59_IN_PC459 = sorted([
    2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454, 295, 296,
    427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355, 85, 347, 220, 349,
    360, 98, 187, 104, 105, 366, 189, 368, 113, 115
])

# A few entries of the official PASCAL-Context labels.txt (1-based id: name, words written apart).
PC459_ANCHORS = {
    1: 'accordion', 3: 'air conditioner', 62: 'case', 63: 'cassette recorder', 208: 'horse-drawn carriage',
    209: 'hot-air balloon', 232: 'light', 233: 'light bulb', 330: 'rug', 382: 'stone', 431: 'unknown',
    458: 'wood', 459: 'wool'
}


def synonyms(line):
    return [s.strip() for s in line.split(',')]


def norm(name):
    return ' '.join(name.lower().replace('-', ' ').replace('_', ' ').split())


@pytest.mark.parametrize('name', sorted(VOCABULARIES))
def test_vocabulary_well_formed(name):
    count, _ = VOCABULARIES[name]
    lines = load_vocabulary(name)
    assert len(lines) == count
    assert len(set(lines)) == count, 'duplicate lines'
    seen = {}
    for i, line in enumerate(lines):
        syns = synonyms(line)
        assert all(syns), f'line {i} has an empty synonym: {line!r}'
        assert ', '.join(syns) == line, f'line {i}: synonyms must be separated by ", ": {line!r}'
        assert len(set(syns)) == len(syns), f'line {i} repeats a synonym: {line!r}'
        for s in syns:  # a name shared by two classes would give both the same text embedding
            assert s not in seen, f'{s!r} is on line {seen[s]} and line {i}'
            seen[s] = i


@pytest.mark.parametrize('name', [n for n, (_, d) in sorted(VOCABULARIES.items()) if d is not None])
def test_vocabulary_matches_mmseg_label_order(name):
    _, dataset = VOCABULARIES[name]
    lines = load_vocabulary(name)
    for i, (mmseg_name, line) in enumerate(zip(dataset.METAINFO['classes'], lines)):
        expected = norm(MMSEG_NAME_EXCEPTIONS.get((name, mmseg_name.strip()), mmseg_name))
        assert expected in [norm(s) for s in synonyms(line)], f'line {i}: MMSeg class {mmseg_name!r} vs {line!r}'


def test_pascal_context_59_lines_are_459_lines():
    pc59, pc459 = load_vocabulary('pascal_context_59'), load_vocabulary('pascal_context_459')
    assert len(PC59_IN_PC459) == 59
    for line, id459 in zip(pc59, PC59_IN_PC459):
        assert line in pc459
        assert synonyms(line)[0] == synonyms(pc459[id459 - 1])[0]


def test_pascal_context_459_official_ids():
    pc459 = load_vocabulary('pascal_context_459')
    for id459, official in PC459_ANCHORS.items():
        assert synonyms(pc459[id459 - 1])[0] == official


def test_load_vocabulary_skips_comments(tmp_path):
    path = tmp_path / 'mine.txt'
    path.write_text('# provenance\n\n  cat, kitty \n# more\ndog\n')
    assert load_vocabulary(str(path)) == ['cat, kitty', 'dog']
