"""Small datasets laid out like the official archives (what a user extracts), for the converters and the
project configs. Images are a few dozen pixels: 1/8 of the real sizes, like the tests' 512 -> 64 crops."""
import os
import os.path as osp

import cv2
import numpy as np

XML_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<Annotations MicronsPerPixel="0.252100">\n'
            '<Annotation Id="1" Name="" ReadOnly="0" Type="4" LineColor="65280" Visible="1" Selected="0">\n'
            '<Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>\n<Regions>\n'
            '<RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>'
            '</RegionAttributeHeaders>\n')
XML_TAIL = '</Regions>\n<Plots/>\n</Annotation>\n</Annotations>\n'


def texture(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def deepglobe_release(root, num_tiles=10, size=128, seed=0):
    """``train/<id>_sat.jpg`` + ``<id>_mask.png`` (road 255 on black, RGB, with off values near 0 and 255 as
    in the release), ``valid/<id>_sat.jpg`` without masks. Returns {id: expected labels}."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'train'), exist_ok=True)
    os.makedirs(osp.join(root, 'valid'), exist_ok=True)
    labels = {}
    for i in range(num_tiles):
        tile_id = str(100000 + 37 * i)
        image = texture(rng, size, size)
        label = np.zeros((size, size), np.uint8)
        label[:, 20 + 7 * i % 60:30 + 7 * i % 60] = 1  # a vertical road
        label[50 + i:58 + i, :] = 1  # a horizontal one
        image[label == 1] = (90, 90, 90)
        mask = np.where(label == 1, rng.integers(200, 256, label.shape), rng.integers(0, 40, label.shape))
        cv2.imwrite(osp.join(root, 'train', f'{tile_id}_sat.jpg'), image)
        cv2.imwrite(osp.join(root, 'train', f'{tile_id}_mask.png'), np.repeat(mask[..., None], 3, 2).astype(np.uint8))
        labels[tile_id] = label
    cv2.imwrite(osp.join(root, 'valid', '999999_sat.jpg'), texture(rng, size, size))
    return labels


def nucleus_polygon(cx, cy, r, n=8):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def write_monuseg_xml(path, polygons):
    with open(path, 'w') as f:
        f.write(XML_HEAD)
        for k, poly in enumerate(polygons, 1):
            f.write(f'<Region Id="{k}" Type="0" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1" '
                    f'Length="40.0" Area="100.0" Text="" NegativeROA="0" InputRegionId="0" Analyze="1" '
                    f'DisplayId="{k}">\n<Attributes/>\n<Vertices>\n')
            for x, y in poly:
                f.write(f'<Vertex X="{x:.6f}" Y="{y:.6f}" Z="0"/>\n')
            f.write('</Vertices>\n</Region>\n')
        f.write(XML_TAIL)


def monuseg_release(root, num_train=5, num_test=2, size=125, seed=0):
    """``MoNuSeg 2018 Training Data/{Tissue Images/*.tif, Annotations/*.xml}`` and
    ``MoNuSegTestData/{*.tif, *.xml}``, nuclei as octagons. Returns {stem: polygons}."""
    rng = np.random.default_rng(seed)
    train = osp.join(root, 'MoNuSeg 2018 Training Data')
    os.makedirs(osp.join(train, 'Tissue Images'), exist_ok=True)
    os.makedirs(osp.join(train, 'Annotations'), exist_ok=True)
    os.makedirs(osp.join(root, 'MoNuSegTestData'), exist_ok=True)
    polygons = {}
    for i in range(num_train + num_test):
        stem = f'TCGA-{i:02d}-A0{i}X-01Z-00-DX1'
        image_dir, xml_dir = ((osp.join(train, 'Tissue Images'), osp.join(train, 'Annotations')) if i < num_train
                              else (osp.join(root, 'MoNuSegTestData'), ) * 2)
        polys = [nucleus_polygon(*rng.uniform(10, size - 10, 2), rng.uniform(4, 8)) for _ in range(12)]
        image = np.full((size, size, 3), (200, 160, 220), np.uint8)  # eosin-pink
        for p in polys:
            cv2.fillPoly(image, [np.round(p).astype(np.int32)], (120, 40, 90))  # haematoxylin-dark nuclei
        image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(osp.join(image_dir, f'{stem}.tif'), image)
        write_monuseg_xml(osp.join(xml_dir, f'{stem}.xml'), polys)
        polygons[stem] = polys
    return polygons


def phenobench_release(root, num=(3, 2, 1), size=128, seed=0):
    """``PhenoBench/{train,val}/{images,semantics}/*.png`` (semantics 0..4) and ``test/images``.
    Returns {(split, name): official semantics}."""
    rng = np.random.default_rng(seed)
    semantics = {}
    for split, n in zip(('train', 'val', 'test'), num):
        if not n:
            continue
        os.makedirs(osp.join(root, split, 'images'), exist_ok=True)
        if split != 'test':
            os.makedirs(osp.join(root, split, 'semantics'), exist_ok=True)
        for i in range(n):
            name = f'phenoBench_{len(semantics) + i:05d}.png'
            sem = np.zeros((size, size), np.uint8)
            for value in (1, 2, 3, 4, 1, 2):  # crops, weeds, partial ones at the border
                y, x = rng.integers(0, size - 24, 2)
                sem[y:y + 24, x:x + 20] = value
            image = np.where(sem[..., None] > 0, (40, 170, 40), (60, 90, 130)).astype(np.uint8)
            cv2.imwrite(osp.join(root, split, 'images', name), image)
            if split != 'test':
                cv2.imwrite(osp.join(root, split, 'semantics', name), sem)
                semantics[(split, name)] = sem
    return semantics


def write_pair(img_path, ann_path, rng, h, w, values, fill=0):
    """An image and a label map of a few rectangles (MMSeg layouts, already converted)."""
    os.makedirs(osp.dirname(img_path), exist_ok=True)
    os.makedirs(osp.dirname(ann_path), exist_ok=True)
    label = np.full((h, w), fill, np.uint8)
    for value in rng.choice(values, min(3, len(values)), replace=False):
        y, x = rng.integers(0, h // 2, 1)[0], rng.integers(0, w // 2, 1)[0]
        label[y:y + h // 2, x:x + w // 2] = value
    cv2.imwrite(img_path, texture(rng, h, w))
    cv2.imwrite(ann_path, label)


def refuge_converted(root, size=48, seed=0):
    """MMSeg's REFUGE layout (its converter's output): images/annotations x training/validation/test, .png,
    labels 0 = background, 1 = optic cup, 2 = optic disc."""
    rng = np.random.default_rng(seed)
    for split in ('training', 'validation', 'test'):
        for i in range(2):
            name = f'{split[0]}{i:04d}.png'
            write_pair(osp.join(root, 'images', split, name), osp.join(root, 'annotations', split, name), rng,
                       size, size, [0, 1, 2])
    return root


def cityscapes_converted(root, h=64, w=128, seed=0):
    """Cityscapes after MMSeg's converter: leftImg8bit/<split>/<city>/*_leftImg8bit.png and
    gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (0..18, 255 ignored)."""
    rng = np.random.default_rng(seed)
    for split, city in (('train', 'aachen'), ('val', 'frankfurt')):
        for i in range(2):
            name = f'{city}_000000_{i:06d}'
            write_pair(osp.join(root, 'leftImg8bit', split, city, f'{name}_leftImg8bit.png'),
                       osp.join(root, 'gtFine', split, city, f'{name}_gtFine_labelTrainIds.png'), rng, h, w,
                       np.arange(19), fill=255)
    return root


def bdd100k_release(root, h=72, w=128, seed=1):
    """BDD100K 10k semantic segmentation as released: images/10k/<split>/*.jpg and
    labels/sem_seg/masks/<split>/*.png (train ids 0..18, 255 ignored)."""
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        for i in range(2):
            name = f'7d2f7975-e0c1c5a{i}'
            write_pair(osp.join(root, 'images', '10k', split, f'{name}.jpg'),
                       osp.join(root, 'labels', 'sem_seg', 'masks', split, f'{name}.png'), rng, h, w,
                       np.arange(19), fill=255)
    return root
