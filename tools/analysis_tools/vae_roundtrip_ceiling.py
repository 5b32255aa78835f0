"""What a VAE lets a latent segmenter see, on SynthShapes (or any MMSeg-layout dataset of RGB PNGs).

Two ceilings of DiGSeg with a given VAE:

1. The image round trip: every image of the dataset goes encode -> posterior mode -> decode, and
   the result is written as a dataset copy (``--out``; labels copied unchanged). Any segmenter
   trained and tested on that copy sees only what the image latent keeps, e.g. SegFormer-B0 with
   DiGSeg-tiny's schedule::

       python tools/analysis_tools/vae_roundtrip_ceiling.py --vae checkpoints/tiny_sd \\
           --data-root data/synth_shapes --out data/synth_shapes_vae_rt
       python tools/train.py configs/baselines/segformer_mit-b0_synth-shapes-64.py \\
           --work-dir work_dirs/segformer_vae_rt --cfg-options \\
           train_dataloader.dataset.data_root=data/synth_shapes_vae_rt \\
           val_dataloader.dataset.data_root=data/synth_shapes_vae_rt \\
           test_dataloader.dataset.data_root=data/synth_shapes_vae_rt

   The image PSNR of the round trip is printed per split.
2. The mask round trip as mIoU: each ground-truth per-class binary mask of a split (3 channels in
   [-1, 1], as ``LatentVAE.encode_masks`` makes them) goes through the VAE and back; the class score
   is the mean of the decoded channels (``LatentVAE.decode_masks``) and the prediction the argmax
   over classes: what DiGSeg would predict if the U-Net produced every class's mask latent exactly.
   mIoU is computed as MMSeg's IoUMetric does (intersections and unions summed over the split,
   classes absent from both prediction and ground truth left out).

``--vae`` is a Stable-Diffusion-layout folder (with ``vae/``) or a VAE folder itself; to measure an
older committed VAE, e.g.::

    mkdir -p /tmp/old_vae/vae && for f in config.json diffusion_pytorch_model.safetensors; do
        git show HEAD~1:checkpoints/tiny_sd/vae/$f > /tmp/old_vae/vae/$f; done
"""
import argparse
import json
import os
import os.path as osp
import shutil
import time

import numpy as np
import torch
from PIL import Image


def load_vae(path):
    from diffusers import AutoencoderKL
    if osp.isfile(osp.join(path, 'vae', 'config.json')):
        vae = AutoencoderKL.from_pretrained(path, subfolder='vae')
    else:
        vae = AutoencoderKL.from_pretrained(path)
    return vae.float().eval()  # fp32 compute whatever the storage dtype


@torch.no_grad()
def roundtrip(vae, x, batch=32):
    """(N, 3, H, W) in [-1, 1] -> decoded (N, 3, H, W), through the posterior mode."""
    out = []
    for i in range(0, len(x), batch):
        z = vae.encode(x[i:i + batch]).latent_dist.mode()
        out.append(vae.decode(z).sample)
    return torch.cat(out)


def list_split(root, split):
    img_dir = osp.join(root, 'img_dir', split)
    names = sorted(n for n in os.listdir(img_dir) if n.endswith('.png'))
    return img_dir, osp.join(root, 'ann_dir', split), names


def roundtrip_images(vae, root, split, out_root=None, batch=32):
    """Round-trip a split's images; write them under ``out_root`` (if given). Returns mean PSNR (dB)."""
    img_dir, ann_dir, names = list_split(root, split)
    if out_root is not None:
        out_img = osp.join(out_root, 'img_dir', split)
        out_ann = osp.join(out_root, 'ann_dir', split)
        os.makedirs(out_img, exist_ok=True)
        os.makedirs(out_ann, exist_ok=True)
    psnrs = []
    for i in range(0, len(names), batch):
        chunk = names[i:i + batch]
        imgs = np.stack([np.asarray(Image.open(osp.join(img_dir, n)).convert('RGB')) for n in chunk])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        rec = ((roundtrip(vae, x).clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
        rec = rec.astype(np.uint8)
        mse = ((rec.astype(np.float64) - imgs)**2).mean(axis=(1, 2, 3))
        psnrs.extend(10 * np.log10(255.0**2 / np.maximum(mse, 1e-8)))
        if out_root is not None:
            for n, r in zip(chunk, rec):
                Image.fromarray(r).save(osp.join(out_img, n))
                shutil.copyfile(osp.join(ann_dir, n), osp.join(out_ann, n))
    return float(np.mean(psnrs))


@torch.no_grad()
def mask_ceiling(vae, root, split, num_classes, batch=32):
    """Per-class IoU (%) and mIoU of argmax over the VAE-round-tripped ground-truth class masks,
    plus the mean per-mask IoU of the present classes' thresholded masks."""
    _, ann_dir, names = list_split(root, split)
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    mask_ious = []
    for n in names:
        label = np.asarray(Image.open(osp.join(ann_dir, n)))
        masks = torch.from_numpy(np.stack([label == c for c in range(num_classes)])).float()
        x = masks[:, None].expand(-1, 3, -1, -1) * 2 - 1
        score = roundtrip(vae, x, batch).mean(dim=1)  # (C, H, W), about -1 .. 1
        pred = score.argmax(dim=0).numpy()
        valid = label < num_classes  # 255 = ignore
        for c in range(num_classes):
            p, g = (pred == c) & valid, (label == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
            if g.any():
                b = (score[c].numpy() > 0) & valid
                mask_ious.append((b & g).sum() / (b | g).sum())
    with np.errstate(invalid='ignore', divide='ignore'):
        ious = np.where(union > 0, inter / union, np.nan) * 100
    return ious, float(np.nanmean(ious)), float(np.mean(mask_ious)), len(mask_ious)


def dataset_classes(root):
    """The classes of a generated SynthShapes folder (its meta.json; 49 for ``--variant many``), else the
    6-class default. Label ids at or above the count are ignored, so a wrong count would silently drop classes."""
    meta = osp.join(root, 'meta.json')
    if osp.isfile(meta):
        with open(meta) as f:
            return list(json.load(f)['classes'])
    return ['background', 'disc', 'square', 'triangle', 'cross', 'ring']


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--vae', default='checkpoints/tiny_sd', help='SD-layout folder (with vae/) or a VAE folder')
    p.add_argument('--data-root', default='data/synth_shapes')
    p.add_argument('--out', help='write the round-tripped dataset copy here (img_dir/, ann_dir/)')
    p.add_argument('--splits', nargs='+', default=['train', 'val'], help='splits to round-trip')
    p.add_argument('--mask-split', default='val', help='split of the mask ceiling')
    p.add_argument('--classes', nargs='+',
                   help="the label ids' names (default: the data root's meta.json, as SynthShapes writes it, "
                        'else the 6 SynthShapes classes)')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.classes is None:
        args.classes = dataset_classes(args.data_root)

    t0 = time.time()
    vae = load_vae(args.vae)
    print(f'VAE {args.vae}: {sum(q.numel() for q in vae.parameters()) / 1e6:.3f} M parameters, '
          f'{vae.config.latent_channels} latent channels, widths {tuple(vae.config.block_out_channels)}')
    for split in args.splits:
        psnr = roundtrip_images(vae, args.data_root, split, args.out)
        n = len(list_split(args.data_root, split)[2])
        print(f'image round trip, {split} ({n} images): PSNR {psnr:.2f} dB'
              + (f', written to {osp.join(args.out, "img_dir", split)}' if args.out else ''))
    ious, miou, mask_iou, n_masks = mask_ceiling(vae, args.data_root, args.mask_split, len(args.classes))
    print(f'mask round-trip ceiling, {args.mask_split}: argmax over the decoded ground-truth class masks')
    print('| ' + ' | '.join(args.classes) + ' | mIoU |')
    print('|' + '---|' * (len(args.classes) + 1))
    print('| ' + ' | '.join(f'{v:.2f}' for v in ious) + f' | **{miou:.2f}** |')
    print(f'mean IoU of the {n_masks} present class masks, each thresholded at 0: {mask_iou:.4f}')
    print(f'({time.time() - t0:.0f} s)')


if __name__ == '__main__':
    main()
