"""Hugging Face data sets: parquet files (the Hub's format) or a `save_to_disk` folder (arrow).

Read with pyarrow, the library `datasets` itself stores and reads them with, one column at a
time: an image column (HF's `Image` feature, a struct of `bytes` and `path`, or plain binary
bytes) and an integer label column, their names set by `data.image_column` and
`data.label_column`. Class names come from the `ClassLabel` feature the data set records
(parquet schema metadata, or `dataset_info.json`), else `class_0..`. Each parquet row group or
arrow file is one shard of the stream (`stream.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill_cli.data.hf_files import COPY_AGAIN, split_files
from distill_cli.data.shardset import Sample, SampleFault, ShardSet, Unit
from distill_cli.errors import DistillError
from distill_cli.host import LABEL_HINT, check_classes


def _table_schema(path: Path) -> tuple[Any, list[int]]:
    """The schema of one file and its units' row counts (row groups, or the whole arrow file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                table = _open_arrow(source).read_all()
            return table.schema, [table.num_rows]
        meta = pq.ParquetFile(path).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return meta.schema.to_arrow_schema(), groups
    except (OSError, pa.ArrowException) as exc:
        raise DistillError(_unreadable(exc), str(path), COPY_AGAIN) from exc


def _open_arrow(source: Any) -> Any:
    import pyarrow as pa

    try:
        return pa.ipc.open_stream(source)  # what save_to_disk writes
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source)


def _class_names(schema: Any, files: list[Path], label: str) -> list[str] | None:
    """The label column's ClassLabel names, as `datasets` records them."""
    features = None
    meta = schema.metadata or {}
    if b"huggingface" in meta:
        info = _json(meta[b"huggingface"], f"{files[0]}: its 'huggingface' schema metadata")
        features = _get(_get(info, "info"), "features")
    info_file = files[0].parent / "dataset_info.json"
    if features is None and info_file.is_file():
        try:
            text = info_file.read_bytes()
        except OSError as exc:
            raise DistillError(
                f"cannot read {info_file.name}: {exc}", str(info_file), COPY_AGAIN
            ) from exc
        features = _get(_json(text, str(info_file)), "features")
    names = _get(_get(features, label), "names")
    return [str(n) for n in names] if isinstance(names, list) else None


def _json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DistillError(
            f"the data set's feature description is not valid JSON ({exc})",
            where,
            "write the data set again with `datasets` (push_to_hub / save_to_disk)",
        ) from exc


def _get(value: Any, key: str) -> Any:
    """`value[key]` where `value` is a JSON object holding it, else None."""
    return value.get(key) if isinstance(value, dict) else None


def _which_column(schema: Any, key: str) -> str:
    """What to set for a missing column: the one column holding image bytes (CIFAR's `img`)
    or class numbers (`fine_label`, `labels`) when there is exactly one, else the keys."""
    import pyarrow as pa

    def fits(kind: Any) -> bool:
        if key == "label_column":
            return pa.types.is_integer(kind)
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            kind = kind.field("bytes").type
        return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)

    found = [f.name for f in schema if fits(f.type)]
    if len(found) == 1:
        return f"set data.{key}: {found[0]}"
    return "set data.image_column / data.label_column to its columns"


def _check_types(schema: Any, image: str, label: str | None, where: str) -> None:
    """Image bytes and integer class numbers, as `datasets`' Image and ClassLabel features
    store them. Anything else was a traceback in a worker (paths as strings), or trained on
    wrong labels (floats truncated to ints)."""
    import pyarrow as pa

    kind = schema.field(image).type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        kind = kind.field("bytes").type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        paths = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        raise DistillError(
            f"column {image!r} holds {kind}, not image bytes"
            + (
                " (file paths are not read: the images' bytes must be in the data set)"
                if paths
                else ""
            ),
            where,
            "store the images as `datasets`' Image feature (cast_column('image', Image()) "
            "embeds the files), or set data.image_column",
        )
    if label is None:
        return
    kind = schema.field(label).type
    if not (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
        raise DistillError(
            f"column {label!r} holds {kind}, not class numbers",
            where,
            "store integer labels (`datasets`: class_encode_column('label') turns names into a "
            "ClassLabel), or set data.label_column",
        )


def scan_hf_split(
    root: Path,
    where: str,
    image: str,
    label: str,
    classes: list[str] | None = None,
    required: bool = True,
    data_root: Path | None = None,
) -> ShardSet:
    """A split of a Hugging Face data set, its columns checked and its labels counted.

    Without `required`, a split that lacks the label column is unlabeled (distillation images).
    """
    import pyarrow.compute as pc

    files = split_files(root, where, data_root)
    schema, _ = _table_schema(files[0])
    wanted = [image, label] if required or label in schema.names else [image]
    label = label if label in wanted else None
    units, start, top = [], 0, -1
    for path in files:
        schema_here, rows = _table_schema(path)
        missing = [c for c in wanted if c not in schema_here.names]
        if missing:
            key = "image_column" if missing[0] == image else "label_column"
            raise DistillError(
                f"the data set has no column {missing[0]!r} (it has {schema_here.names})",
                str(path),
                _which_column(schema_here, key),
            )
        _check_types(schema_here, image, label, str(path))
        empty = _null_images(path, image)
        if empty:  # was a run stopped at the row's batch, after the models were built
            raise DistillError(
                f"{empty} rows have no image bytes in column {image!r}",
                str(path),
                f"drop them (dataset.filter(lambda r: r[{image!r}] is not None)) or store "
                "their images",
            )
        if label is not None:
            labels = _column(path, label)
            nulls = labels.null_count
            if nulls:
                raise DistillError(
                    f"{nulls} rows have no {label!r}",
                    str(path),
                    "drop those rows, or set data.label_column: null for unlabeled data",
                )
            negative = int(pc.sum(pc.less(labels, 0)).as_py() or 0)
            if negative:  # `datasets` writes -1 for "no label" (a Hub test split's labels)
                raise DistillError(
                    f"{negative} rows have a negative {label!r} (-1 is `datasets`' no label)",
                    str(path),
                    "drop those rows (dataset.filter(lambda r: r['label'] >= 0)), or use a "
                    "labelled split (a Hub test split is often unlabeled)",
                )
            if len(labels):
                top = max(top, int(pc.max(labels).as_py()))
        for part, count in enumerate(rows):
            if count:
                units.append(Unit(path, count, start, part))
            start += count
    own = _class_names(schema, files, label or "")
    named = classes and classes != _numbered(len(classes))  # train's own names, not class_i
    if named and own and own != classes:  # its numbers mean other classes than train's
        raise DistillError(
            f"this split's ClassLabel names {own[:4]}{'...' if len(own) > 4 else ''} are not the "
            f"training split's {classes[:4]}{'...' if len(classes) > 4 else ''} in that order: "
            "its label numbers would be read as other classes",
            f"{where}: {root}",
            "write both splits with one ClassLabel feature (datasets: cast_column with the "
            "training split's features)",
        )
    if not (classes or own):
        check_classes(top + 1, f"{where}: {root}", LABEL_HINT)
    names = classes or own or _numbered(top + 1)
    if top >= len(names):  # found here, not by the batch that holds it mid-run
        raise DistillError(
            f"label {top} is beyond the {len(names)} classes "
            + ("of the training split" if classes else "its ClassLabel names"),
            f"{where}: {root}",
            f"labels are 0..{len(names) - 1}, or write the ClassLabel feature with every class",
        )
    options = {"image": image, "label": label or ""}
    return ShardSet(
        str(root),
        names,
        units,
        read_rows,
        labeled=label is not None,
        options=options,
        label_reader=row_labels,
    )


def _null_images(path: Path, image: str) -> int:
    """Rows without image bytes (null, or an Image struct whose `bytes` is null), from the
    parquet footer's statistics (free: no page is read) or the memory-mapped arrow file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                column = _open_arrow(source).read_all().column(image)
            if pa.types.is_struct(column.type):
                return sum(chunk.field("bytes").null_count for chunk in column.chunks)
            return column.null_count
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise DistillError(_unreadable(exc), str(path), COPY_AGAIN) from exc
    nulls = 0
    for group in range(meta.num_row_groups):
        for col in range(meta.num_columns):
            chunk = meta.row_group(group).column(col)
            if chunk.path_in_schema in (image, f"{image}.bytes") and chunk.is_stats_set:
                nulls += chunk.statistics.null_count or 0
    return nulls


def _numbered(count: int) -> list[str]:
    """The names of classes a data set does not name: `class_0`, `class_1`, ..."""
    return [f"class_{i}" for i in range(count)]


def _unreadable(exc: Exception) -> str:
    """pyarrow's reason on one line: a damaged page's is several ("Couldn't deserialize
    thrift: ...\nDeserializing page header failed.")."""
    return "cannot read data set file: " + " ".join(str(exc).split())[:300]


def _column(path: Path, name: str) -> Any:
    """One column of a whole file; a damaged file is one line naming it (a damaged page in a
    row group passed the footer check and reached the CLI as a vague multi-line OS error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                return _open_arrow(source).read_all().column(name)
        return pq.read_table(path, columns=[name]).column(name)
    except (OSError, pa.ArrowException) as exc:
        raise DistillError(_unreadable(exc), str(path), COPY_AGAIN) from exc


def row_labels(data: ShardSet, unit: Unit) -> list[int]:
    """The label column of one row group (parquet) or arrow file, in order; the image column
    is not read (parquet stores columns apart; an arrow file is memory-mapped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    label = data.options["label"]
    try:
        if unit.path.suffix == ".arrow":
            column = _column(unit.path, label)
        else:
            group = pq.ParquetFile(unit.path).read_row_group(unit.part, columns=[label])
            column = group.column(label)
    except (OSError, pa.ArrowException) as exc:
        raise DistillError(_unreadable(exc), str(unit.path), COPY_AGAIN) from exc
    return [-1 if value is None else int(value) for value in column.to_pylist()]


def read_rows(data: ShardSet, unit: Unit) -> Iterator[Sample]:
    """The samples of one row group (parquet) or arrow file, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image, label = data.options["image"], data.options["label"]
    columns = [c for c in (image, label) if c]
    try:
        if unit.path.suffix == ".arrow":
            with pa.memory_map(str(unit.path)) as source:
                table = _open_arrow(source).read_all().select(columns)
        else:
            table = pq.ParquetFile(unit.path).read_row_group(unit.part, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise SampleFault(_unreadable(exc), str(unit.path)) from exc
    images = table.column(image).to_pylist()
    labels = table.column(label).to_pylist() if label else [-1] * len(images)
    for row, (value, cls) in enumerate(zip(images, labels, strict=True)):
        key = f"{unit.path}:row group {unit.part}, row {row}"
        raw = value.get("bytes") if isinstance(value, dict) else value
        if raw is None:  # a data set of paths, not images: empty bytes are a bad image instead
            raise SampleFault(
                f"no image bytes in column {image!r}",
                key,
                "store the images' bytes in the data set",
            )
        yield Sample(unit.start + row, bytes(raw), -1 if cls is None else int(cls), key)
