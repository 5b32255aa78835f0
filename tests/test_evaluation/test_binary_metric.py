"""BinarySegMetric: values against hand-computed ones, the score of one- and two-channel outputs, and the
threshold search (a case whose best threshold is known; saved, then reused)."""
import json
import math

import numpy as np
import pytest
import torch

from mmseg_digseg.evaluation import BinarySegMetric, foreground_scores
from mmseg_digseg.evaluation.metrics.binary_metric import _counts, sweep_counts

# image 1: TP 3, FN 1, FP 1 (the predicted pixel at (2, 3) is ignored), TN 10 of 15 valid pixels
GT1 = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 255], [0, 0, 0, 0]]
PRED1 = [[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
# image 2: no foreground, one false positive: TP 0, FN 0, FP 1, TN 15
GT2 = [[0] * 4] * 4
PRED2 = [[0] * 4] * 3 + [[0, 0, 0, 1]]


def sample(gt, pred=None, seg_logits=None):
    out = {'gt_sem_seg': {'data': torch.tensor(gt)[None]}}
    if pred is not None:
        out['pred_sem_seg'] = {'data': torch.tensor(pred)[None]}
    if seg_logits is not None:
        out['seg_logits'] = {'data': seg_logits}
    return out


def evaluate(metric, samples):
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_values_of_one_image_by_hand():
    m = evaluate(BinarySegMetric(), [sample(GT1, PRED1)])
    expected = {'IoU': 3 / 5, 'Precision': 3 / 4, 'Recall': 3 / 4, 'F1': 6 / 8, 'Dice': 6 / 8,
                'mIoU': (3 / 5 + 10 / 12) / 2, 'aAcc': 13 / 15}
    assert m == pytest.approx({k: 100 * v for k, v in expected.items()})


def test_dataset_and_image_aggregation_by_hand():
    samples = [sample(GT1, PRED1), sample(GT2, PRED2)]
    pooled = evaluate(BinarySegMetric(aggregate='dataset'), samples)  # TP 3, FP 2, FN 1, TN 25
    assert pooled == pytest.approx({k: 100 * v for k, v in {
        'IoU': 3 / 6, 'Precision': 3 / 5, 'Recall': 3 / 4, 'F1': 6 / 9, 'Dice': 6 / 9,
        'mIoU': (3 / 6 + 25 / 28) / 2, 'aAcc': 28 / 31}.items()})
    per_image = evaluate(BinarySegMetric(aggregate='image'), samples)
    # image 2: IoU 0/1, precision 0/1, recall 0/0 (undefined: skipped), F1 0/1, background IoU 15/16
    assert per_image == pytest.approx({k: 100 * v for k, v in {
        'IoU': (3 / 5 + 0) / 2, 'Precision': (3 / 4 + 0) / 2, 'Recall': 3 / 4, 'F1': (6 / 8 + 0) / 2,
        'Dice': (6 / 8 + 0) / 2, 'mIoU': ((3 / 5 + 10 / 12) / 2 + (0 + 15 / 16) / 2) / 2,
        'aAcc': (13 / 15 + 16 / 16 - 1 / 16) / 2}.items()})


def test_empty_images_skipped_or_perfect_by_hand():
    """Per image, an image with no foreground in label and prediction has IoU, precision, recall and F1 0/0:
    'skip' leaves it out of their means, 'perfect' counts it as 1. An image with false positives only keeps
    its recall 0/0 skipped either way; an image whose pixels are all ignored counts for nothing."""
    empty = sample(GT2, GT2)  # TP 0, FP 0, FN 0, TN 16
    ignored = sample([[255] * 4] * 4, GT2)  # no valid pixel
    samples = [sample(GT1, PRED1), empty, sample(GT2, PRED2), ignored]
    skip = evaluate(BinarySegMetric(aggregate='image'), samples)
    perfect = evaluate(BinarySegMetric(aggregate='image', empty_images='perfect'), samples)
    miou = ((3 / 5 + 10 / 12) / 2 + 1 + (0 + 15 / 16) / 2) / 3  # the empty image: background IoU 16/16
    aacc = (13 / 15 + 1 + 15 / 16) / 3
    assert skip == pytest.approx({k: 100 * v for k, v in {
        'IoU': (3 / 5 + 0) / 2, 'Precision': (3 / 4 + 0) / 2, 'Recall': 3 / 4, 'F1': (6 / 8 + 0) / 2,
        'Dice': (6 / 8 + 0) / 2, 'mIoU': miou, 'aAcc': aacc}.items()})
    assert perfect == pytest.approx({k: 100 * v for k, v in {
        'IoU': (3 / 5 + 1 + 0) / 3, 'Precision': (3 / 4 + 1 + 0) / 3, 'Recall': (3 / 4 + 1) / 2,
        'F1': (6 / 8 + 1 + 0) / 3, 'Dice': (6 / 8 + 1 + 0) / 3, 'mIoU': miou, 'aAcc': aacc}.items()})
    with pytest.raises(ValueError, match="aggregate='image'"):
        BinarySegMetric(empty_images='perfect')  # pooled counts: nothing to score per image


def test_empty_images_convention_changes_the_searched_threshold(tmp_path):
    """Image A: 5 foreground pixels, one at 0.7 and four at 0.4, background at 0.1. Image B: no foreground,
    one background pixel at 0.4. t=0.3: A's F1 1, B's F1 0 (a false positive). t=0.5: A's F1 2/6, B empty.
    'skip': 0.3 -> (1 + 0) / 2 beats 0.5 -> 1/3 (B left out). 'perfect': 0.5 -> (1/3 + 1) / 2 beats 1/2."""
    scores_a, gt_a = torch.full((4, 4), 0.1), torch.zeros(4, 4, dtype=torch.long)
    gt_a[0, :] = 1
    gt_a[1, 0] = 1
    scores_a[0, :], scores_a[1, 0], scores_a[0, 0] = 0.4, 0.4, 0.7
    scores_b = torch.full((4, 4), 0.1)
    scores_b[2, 2] = 0.4
    samples = [sample(gt.tolist(), torch.zeros(4, 4, dtype=torch.long).tolist(),
                      seg_logits=torch.stack([torch.zeros(4, 4), torch.logit(scores)]))
               for gt, scores in ((gt_a, scores_a), (torch.zeros(4, 4, dtype=torch.long), scores_b))]
    kwargs = dict(search_threshold=True, thresholds=[0.3, 0.5], aggregate='image')
    skip = evaluate(BinarySegMetric(threshold_file=str(tmp_path / 'skip.json'), **kwargs), samples)
    perfect = evaluate(BinarySegMetric(empty_images='perfect', threshold_file=str(tmp_path / 'perfect.json'),
                                       **kwargs), samples)
    assert (skip['threshold'], skip['F1']) == pytest.approx((0.3, 50))
    assert (perfect['threshold'], perfect['F1']) == pytest.approx((0.5, 100 * (1 / 3 + 1) / 2))


def test_fixed_threshold_on_two_channel_logits():
    """Two channels: score = softmax foreground probability = sigmoid(l_fg - l_bg); fg where score > t."""
    scores = torch.tensor([[0.9, 0.5, 0.3, 0.1]] * 4)
    logits = torch.stack([torch.zeros(4, 4), torch.log(scores / (1 - scores))])  # l_bg = 0
    gt = [[1, 1, 0, 0]] * 4
    m = evaluate(BinarySegMetric(threshold=0.4), [sample(gt, seg_logits=logits)])
    # fg predicted: columns 0 and 1 (0.9, 0.5 > 0.4): TP 8, everything else TN
    assert m['IoU'] == pytest.approx(100) and m['aAcc'] == pytest.approx(100)
    m = evaluate(BinarySegMetric(threshold=0.6), [sample(gt, seg_logits=logits)])  # column 0 only: TP 4, FN 4
    assert (m['Precision'], m['Recall'], m['IoU']) == pytest.approx((100, 50, 50))
    # the background logit counts: softmax vs the foreground prompt's own sigmoid
    logits[0] = 2.0
    assert foreground_scores(logits, two_channel_score='softmax') == pytest.approx(torch.sigmoid(logits[1] - 2))
    assert foreground_scores(logits, two_channel_score='sigmoid') == pytest.approx(scores)


def test_foreground_scores_of_one_channel_and_errors():
    probs = torch.rand(1, 3, 5)  # MMSeg's postprocess_result stores sigmoid(logit) for one channel
    assert torch.equal(foreground_scores(probs), probs[0])
    with pytest.raises(ValueError, match=r'scores in \[0, 1\]'):
        foreground_scores(torch.full((1, 2, 2), 3.0))
    with pytest.raises(ValueError, match='1 or 2 channels'):
        foreground_scores(torch.zeros(3, 2, 2))
    with pytest.raises(KeyError, match='seg_logits'):
        evaluate(BinarySegMetric(threshold=0.5), [sample(GT1, PRED1)])
    with pytest.raises(ValueError, match='threshold'):
        BinarySegMetric(threshold=1.5)


def test_sweep_counts_equal_direct_counts_at_every_threshold():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(32, 32, generator=g)
    scores[0, :4] = torch.tensor([0.25, 0.5, 0.75, 0.0])  # scores equal to thresholds: not foreground
    gt_fg = torch.rand(32, 32, generator=g) > 0.6
    valid = torch.rand(32, 32, generator=g) > 0.1
    thresholds = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.99], dtype=torch.float64)
    sweep = sweep_counts(scores, gt_fg, valid, thresholds)
    for j, t in enumerate(thresholds.tolist()):
        assert sweep[j].tolist() == _counts(scores > t, gt_fg, valid).tolist()


def separable_logits(rng, lo, hi, size=(16, 16)):
    """Two-channel logits of an image whose foreground (left half) scores in [hi, 1) and background in
    (0, lo]: every threshold in [lo, hi) separates them exactly."""
    gt = np.zeros(size, np.int64)
    gt[:, :size[1] // 2] = 1
    scores = np.where(gt == 1, rng.uniform(hi, 0.999, size), rng.uniform(0.001, lo, size))
    scores[0, 0], scores[-1, -1] = hi, lo  # the extremes occur
    scores = torch.tensor(scores, dtype=torch.float32)
    return gt.tolist(), torch.stack([torch.zeros(size), torch.log(scores) - torch.log1p(-scores)])


def test_search_finds_the_known_best_threshold_saves_and_reuses_it(tmp_path):
    """Background scores reach 0.5949, foreground starts at 0.6051: on the 0.01 grid only 0.60 separates
    them (0.59 keeps a false positive, 0.61 loses a true positive), so the search must choose 0.60."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / 'sub' / 'binary_threshold.json')
    val = [sample(gt, seg_logits=logits) for gt, logits in (separable_logits(rng, 0.5949, 0.6051) for _ in range(3))]
    for s in val:  # the model's own decision (argmax at 0.5) has false positives
        s['pred_sem_seg'] = {'data': (foreground_scores(s['seg_logits']['data']) > 0.5).long()[None]}
    m = evaluate(BinarySegMetric(search_threshold=True, threshold_file=path), val)
    assert m['threshold'] == pytest.approx(0.60)
    assert m['F1'] == m['IoU'] == m['mIoU'] == m['aAcc'] == pytest.approx(100)
    assert m['F1_default'] < 100 and m['Precision_default'] < 100 and m['Recall_default'] == pytest.approx(100)
    record = json.load(open(path))
    assert record['threshold'] == pytest.approx(0.60) and record['search_by'] == 'F1' and record['num_images'] == 3
    f1 = dict(zip(record['curve']['thresholds'], record['curve']['F1']))
    assert f1[0.6] == pytest.approx(100) and f1[0.59] < 100 and f1[0.61] < 100
    assert record['default']['metrics']['F1'] == pytest.approx(m['F1_default'])

    # the test split reuses 0.60: its scores are 0.58 (background) and 0.605 (foreground) -> perfect; at 0.5
    # (the model's decision) every background pixel would be a false positive
    gt = [[1, 1, 0, 0]] * 2
    scores = torch.tensor([[0.605, 0.605, 0.58, 0.58]] * 2)
    test = [sample(gt, seg_logits=torch.stack([torch.zeros(2, 4), torch.logit(scores)]))]
    reused = evaluate(BinarySegMetric(threshold='from_file', threshold_file=path), test)
    assert reused['IoU'] == pytest.approx(100)
    assert evaluate(BinarySegMetric(threshold=0.5), test)['Precision'] == pytest.approx(50)


def test_search_by_miou_and_per_image(tmp_path):
    """mIoU weighs the background: with few foreground pixels it prefers a higher threshold than F1.

    Foreground: 2 pixels at 0.45 and 0.75. Background: 14 pixels, 2 of them at 0.55, 12 at 0.05.
    t=0.3: TP 2 FP 2 FN 0 -> F1 4/6;  t=0.5: TP 1 FP 2 FN 1 -> F1 2/5;  t=0.6: TP 1 FP 0 FN 1 -> F1 2/3;
    t=0.8: F1 0. F1 ties at 0.3 and 0.6 (the lower threshold wins); mIoU prefers 0.6."""
    scores = torch.full((4, 4), 0.05)
    gt = torch.zeros(4, 4, dtype=torch.long)
    gt[0, 0], gt[0, 1] = 1, 1
    scores[0, 0], scores[0, 1], scores[3, 2], scores[3, 3] = 0.45, 0.75, 0.55, 0.55
    logits = torch.stack([torch.zeros(4, 4), torch.logit(scores)])
    pred = logits.argmax(0).tolist()
    grid = [0.3, 0.5, 0.6, 0.8]
    by_f1 = evaluate(BinarySegMetric(search_threshold=True, thresholds=grid, threshold_file=str(tmp_path / 'a.json')),
                     [sample(gt.tolist(), pred, seg_logits=logits)])
    assert by_f1['threshold'] == pytest.approx(0.3) and by_f1['F1'] == pytest.approx(200 / 3)
    by_miou = evaluate(BinarySegMetric(search_threshold=True, thresholds=grid, search_by='mIoU',
                                       threshold_file=str(tmp_path / 'b.json')),
                       [sample(gt.tolist(), pred, seg_logits=logits)])
    # t=0.3: IoU_fg 2/4, IoU_bg 12/14; t=0.6: IoU_fg 1/2, IoU_bg 14/15 (higher)
    assert by_miou['threshold'] == pytest.approx(0.6)
    assert by_miou['mIoU'] == pytest.approx(100 * (1 / 2 + 14 / 15) / 2)
    per_image = evaluate(BinarySegMetric(search_threshold=True, thresholds=grid, aggregate='image',
                                         threshold_file=str(tmp_path / 'c.json')),
                         [sample(gt.tolist(), pred, seg_logits=logits)] * 2)
    assert per_image['threshold'] == pytest.approx(0.3) and not math.isnan(per_image['F1'])


def test_from_file_uses_the_threshold_of_the_weights_under_test(tmp_path):
    """Two searches of two weights (0.60, then 0.30) in one file: each weights get their own threshold (the
    file's last search is 0.30); a checkpoint's stored search comes first; unknown weights are an error that
    says how to search."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / 'binary_threshold.json')
    for it, (lo, hi), best in ((2, (0.5949, 0.6051), 0.60), (4, (0.2949, 0.3051), 0.30)):
        val = [sample(gt, seg_logits=logits) for gt, logits in (separable_logits(rng, lo, hi) for _ in range(2))]
        for s in val:
            s['pred_sem_seg'] = {'data': torch.zeros(1, 16, 16, dtype=torch.long)}
        search = BinarySegMetric(search_threshold=True, threshold_file=path)
        search.set_weights(dict(experiment_name='run', iter=it, record=None))
        assert evaluate(search, val)['threshold'] == pytest.approx(best)
    record = json.load(open(path))
    assert record['threshold'] == pytest.approx(0.30) and record['iter'] == 4  # the last search
    assert sorted(record['by_weights']) == ['run iter 2', 'run iter 4']
    # the test image: foreground at 0.65, background at 0.35: perfect at 0.60; at 0.30 every background
    # pixel is a false positive (precision 50)
    gt = [[1, 1, 0, 0]] * 2
    scores = torch.tensor([[0.65, 0.65, 0.35, 0.35]] * 2)
    test = [sample(gt, seg_logits=torch.stack([torch.zeros(2, 4), torch.logit(scores)]))]

    def tested(weights):
        metric = BinarySegMetric(threshold='from_file', threshold_file=path)
        metric.set_weights(weights)
        return evaluate(metric, test)

    at_2 = tested(dict(experiment_name='run', iter=2, record=None))
    assert at_2['threshold'] == pytest.approx(0.60) and at_2['Precision'] == pytest.approx(100)
    at_4 = tested(dict(experiment_name='run', iter=4, record=None))
    assert at_4['threshold'] == pytest.approx(0.30) and at_4['Precision'] == pytest.approx(50)
    stored = tested(dict(experiment_name='other', iter=8, record=dict(threshold=0.5, search_by='F1')))
    assert stored['threshold'] == pytest.approx(0.5)
    for weights in (dict(experiment_name='run', iter=6, record=None), dict(experiment_name=None, iter=None)):
        with pytest.raises(ValueError, match='--search-threshold') as err:
            tested(weights)
        assert "run iter 2" in str(err.value) and 'test_evaluator.threshold=' in str(err.value)


def test_missing_threshold_file_says_how_to_make_it(tmp_path):
    metric = BinarySegMetric(threshold='from_file', threshold_file=str(tmp_path / 'none.json'))
    with pytest.raises(FileNotFoundError, match='search_threshold=True'):
        evaluate(metric, [sample(GT1, seg_logits=torch.zeros(2, 4, 4))])


def test_one_class_vocabulary_through_the_model(tiny_model):
    """A one-class vocabulary: DiGSeg returns one logit channel, MMSeg's postprocess stores its sigmoid and
    thresholds it at the head's threshold; the metric reads that score and reproduces the label map."""
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    tiny_model.class_names = ['road']
    tiny_model.eval()
    inputs = torch.rand(1, 3, 32, 32) * 2 - 1
    meta = dict(ori_shape=(32, 32), img_shape=(32, 32), pad_shape=(32, 32), padding_size=[0, 0, 0, 0])
    ds = SegDataSample(metainfo=meta)
    ds.gt_sem_seg = PixelData(data=torch.zeros(1, 32, 32, dtype=torch.long))
    with torch.no_grad():
        logits = tiny_model.encode_decode(inputs, [meta])
        [out] = tiny_model.predict(inputs, [ds])
    assert out.seg_logits.data.shape == (1, 32, 32)
    score = foreground_scores(out.seg_logits.data)
    assert torch.allclose(score, torch.sigmoid(logits[0, 0]), atol=1e-6)
    assert torch.equal(out.pred_sem_seg.data[0].bool(), score > tiny_model.decode_head.threshold)
    t = float(score.median())
    gt = (score > t).long()
    out.gt_sem_seg = PixelData(data=gt[None])
    m = evaluate(BinarySegMetric(threshold=t), [out.to_dict()])
    assert m['IoU'] == pytest.approx(100)
