"""Pinned class lists of the evaluation datasets, one class per line in label order.

A line holds a class name and its synonyms, separated by ", "; the text encoder averages the
prompts of all synonyms. Lines starting with "#" (provenance) and blank lines are skipped.
"""
import os.path as osp
from typing import List

VOCABULARY_DIR = osp.dirname(osp.abspath(__file__))


def vocabulary_path(name: str) -> str:
    """A shipped vocabulary name (e.g. ``'ade20k_847'``) or a path to a .txt file -> the file."""
    if name.endswith('.txt'):
        return name
    return osp.join(VOCABULARY_DIR, f'{name}.txt')


def list_vocabularies() -> List[str]:
    import glob
    return sorted(osp.basename(p)[:-4] for p in glob.glob(osp.join(VOCABULARY_DIR, '*.txt')))


def load_vocabulary(name: str) -> List[str]:
    """The class names (with synonyms) of a shipped vocabulary or of a .txt file, in label order."""
    path = vocabulary_path(name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'No vocabulary "{name}" ({path}). Give a list of class names or prompts, '
                                f'a shipped vocabulary ({", ".join(list_vocabularies())}) or a .txt file '
                                'with one class a line.')
    with open(path, encoding='utf-8') as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line and not line.startswith('#')]
