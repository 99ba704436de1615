"""Which items a seeded draw takes: `data.subset`, `data.holdout` and `data.train_limit`.

Functions of the labels alone (and the seed), so a split held in memory and one streamed from
shards (which passes the labels it read in index order) pick the same items. Every draw that
shrinks a training split leaves each class of the data at least one training image: a class
drawn out entirely would be an output the model never trains on, silently. Each draw changes
only where a class would run out, so runs (and the committed benchmark splits) made before a
rule was added draw the same items.
"""

from __future__ import annotations

import torch

from distill_cli.errors import DistillError


def holdout_indices(
    labels: torch.Tensor | None, num_classes: int, count: int, seed: int, name: str
) -> torch.Tensor:
    """Sorted indices of the `count` items `data.holdout` takes out of a training split.

    One rule for every source (`ImageSet.split_off`, and the streamed splits, which pass the
    labels they read in index order): a class-balanced draw as `balanced_indices` makes it,
    so the same seed always holds out the same items; unlabeled data cannot be balanced. Every
    class keeps at least one training image: a class the holdout took whole would be an output
    the model never trains on, silently (a class of one photo among larger ones).
    """
    if labels is None:
        raise DistillError(
            "a held-out split needs labels, and these training images have none",
            f"data.holdout ({name})",
            "drop data.holdout, or train on a labelled split",
        )
    # the class bound first: it is the tighter one, so the advice names the count that works
    # (it said "below 128", and 127 was then refused for leaving a class no image)
    present = int((torch.bincount(labels, minlength=num_classes) > 0).sum())
    if count > len(labels) - present:
        raise DistillError(
            f"cannot hold out {count} of {len(labels)} training images and leave each of the "
            f"{present} classes a training image",
            f"data.holdout ({name})",
            f"set data.holdout to at most {len(labels) - present}, or add images"
            if len(labels) > present
            # "at most 0" named a value the key refuses: one image per class has none to spare
            else "every class has a single training image: drop data.holdout, or add images",
        )
    check_holdout(count, len(labels))
    return balanced_indices(labels, num_classes, count, seed, keep=1)


def check_holdout(count: int, total: int) -> None:
    """`data.holdout` must leave training images: the one check for every source, including a
    plan made without the data (`streamed.unread_splits`)."""
    if count >= total:
        raise DistillError(
            f"cannot hold out {count} of {total} training images",
            "data.holdout",
            f"set data.holdout below {total}" if total > 1 else "drop data.holdout, or add images",
        )


def balanced_indices(
    labels: torch.Tensor, num_classes: int, count: int, seed: int, keep: int = 0
) -> torch.Tensor:
    """Sorted indices of `count` items, the classes as equal as the data allows.

    Each class gives `count // K` items (the first `count % K` classes, in a seeded order, one
    more), drawn at random with `seed`; a class with too few items gives all it has (less
    `keep`, what the holdout leaves each class to train on) and the rest is filled from the
    other classes. A function of the labels alone, so a split held in memory and one streamed
    from shards pick the same way; `keep` changes a draw only where a class runs out.
    """
    gen = torch.Generator().manual_seed(seed)
    pools = [
        torch.nonzero(labels == c).flatten()[
            torch.randperm(int((labels == c).sum()), generator=gen)
        ]
        for c in range(num_classes)
    ]
    pools = [pool[: max(0, len(pool) - keep)] for pool in pools]
    quota = [count // num_classes] * num_classes
    for c in torch.randperm(num_classes, generator=gen)[: count % num_classes]:
        quota[int(c)] += 1
    taken = [pool[:q] for pool, q in zip(pools, quota, strict=True)]
    short = count - sum(len(t) for t in taken)
    if short:  # classes with too few images: fill from what the others have left
        rest = torch.cat([pool[q:] for pool, q in zip(pools, quota, strict=True)])
        taken.append(rest[torch.randperm(len(rest), generator=gen)[:short]])
    return torch.cat(taken).sort().values


def limit_indices(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Sorted indices of the `count` items `data.train_limit` keeps of a training split.

    The first `count` items of a permutation seeded by `seed`: the draw `train_limit` always
    made. Where that draw leaves a class of the data without an image, each such class gets the
    first of its items in the permutation, in place of the last items drawn from classes that
    keep another; so the draw is the old one whenever no class runs out. A limit below the
    number of classes cannot keep them all and is refused.
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    taken = order[:count]
    present = torch.bincount(labels) > 0
    kept = torch.bincount(labels[taken], minlength=len(present))
    missing = torch.nonzero(present & (kept == 0)).flatten().tolist()
    if not missing:
        return taken.sort().values
    classes = int(present.sum())
    if count < classes:
        raise DistillError(
            f"data.train_limit ({count}) cannot keep a training image of each of the "
            f"{classes} classes",
            "data.train_limit",
            f"set it to at least {classes}, or drop it",
        )
    ordered_labels = labels[order]
    added = [order[int(torch.nonzero(ordered_labels == c)[0])] for c in missing]
    keep = torch.ones(count, dtype=torch.bool)
    to_drop = len(added)
    for pos in range(count - 1, -1, -1):  # the last drawn first, from classes that keep one
        cls = int(labels[taken[pos]])
        if kept[cls] > 1:
            keep[pos] = False
            kept[cls] -= 1
            to_drop -= 1
            if not to_drop:
                break
    return torch.cat([taken[keep], torch.stack(added)]).sort().values
