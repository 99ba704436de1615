"""Building a run: everything a recipe describes, made ready before any training.

Device and precision, data, teacher and student (with their weights and input configs), the
batch streams and the method, in that order, into a `setup.Setup`. `--dry-run` stops here and
prints its plan.
"""

from __future__ import annotations

import os

import torch

from distill_cli.data import DataBundle, build_data
from distill_cli.data.augment import BatchAugment
from distill_cli.data.classes import align_classes, model_class_names, timm_folder_names
from distill_cli.data.duplicates import Duplicates, find_duplicates
from distill_cli.data.frames import MultiFrame, multi_frame_files
from distill_cli.data.loader import BatchStream
from distill_cli.data.shardset import ShardSet
from distill_cli.data.stream import ShardStream
from distill_cli.errors import DistillError
from distill_cli.methods import Method, MethodContext, create_method, method_class
from distill_cli.models.create import Net, create_net, create_teacher, infer_num_classes
from distill_cli.models.probe import probe
from distill_cli.models.view import DATA_CHANNELS, channels_fit, load_sizes
from distill_cli.recipe.document import Recipe
from distill_cli.recipe.loop_sections import RuntimeSpec
from distill_cli.train.distributed import has_batchnorm, init, joined, sync_batchnorm
from distill_cli.train.setup import RunLength, Setup, Stream
from distill_cli.train.world import World, world_from_env


def resolve_device(choice: str, world: World | None = None) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        # `""` and `-1` (the usual ways to hide every GPU) name no device; another value is
        # named as it is, as it may name a GPU this machine lacks
        hides = hidden is not None and (not hidden.strip() or hidden.strip().startswith("-"))
        shown = "" if hidden is None else f" (CUDA_VISIBLE_DEVICES={hidden!r}"
        raise DistillError(
            "the recipe asks for CUDA but none is available"
            + (shown and shown + (" hides the GPUs)" if hides else ")")),
            "runtime.device",
            "set runtime.device=auto or cpu"
            + (", or unset CUDA_VISIBLE_DEVICES" if hidden is not None else ""),
        )
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and world is not None and world.distributed:
        visible = torch.cuda.device_count()
        # torchrun says how many processes share the machine, so every one of them refuses
        # alike (rank 0 says it, before any waits for the others); under srun only those
        # beyond the GPUs know, and each says so (`own`). torch failed later, "invalid device
        # ordinal", while the others waited for it.
        needed = world.local_size or world.local_rank + 1
        if needed > visible:
            error = DistillError(
                f"{needed} processes on a machine that shows {visible} "
                f"GPU{'s' if visible != 1 else ''} (process {world.rank} is its local "
                f"process {world.local_rank})",
                "LOCAL_WORLD_SIZE" if world.local_size else "LOCAL_RANK",
                f"start at most {visible} processes per machine (--nproc, torchrun's "
                "--nproc_per_node, srun's --ntasks-per-node), one per GPU",
            )
            error.own = world.local_size is None
            raise error
        return torch.device("cuda", world.local_rank)
    return torch.device(choice)


def build(recipe: Recipe, plan_only: bool = False) -> Setup:
    """Build device, data, nets, method and streams from a recipe (no training).

    The order is part of the contract: data first, then the seed, then teacher and student
    (their random initialisation depends on it), so a recipe always builds the same run.
    `plan_only` (`--dry-run`): streamed data that is not at hand is replaced by stand-ins of
    the sizes the recipe states (`data.train_images`), so a cluster run can be planned anywhere.
    """
    rt = recipe.runtime
    if rt.threads and not plan_only:  # `engine.run` gives the caller's count back afterwards
        torch.set_num_threads(rt.threads)
    world = world_from_env()
    if recipe.schedule.batch_size % world.size:
        raise DistillError(
            f"batch size {recipe.schedule.batch_size} cannot be split over {world.size} processes",
            "schedule.batch_size",
            f"use a multiple of {world.size} (it is the global batch)",
        )
    device = resolve_device(rt.device, world)
    if not plan_only:  # rank 0 alone plans (`cli.app`): joining the group would wait forever
        init(world, device)
    cuda = device.type == "cuda"
    precision = rt.precision if rt.precision != "auto" else ("bf16" if cuda else "fp32")
    channels_last = rt.channels_last if rt.channels_last is not None else cuda
    cls = method_class(recipe.method.name)
    if world.distributed and not cls.supports_ddp:
        raise DistillError(
            f"method {cls.name!r} does not run multi-process yet",
            "torchrun",
            "run it in one process",
        )

    check_method(recipe)  # what the recipe alone refuses: before the data and the models
    data, data_read = _planned_data(recipe, cls.needs_teacher, plan_only)
    if cls.needs_labels and not data.labeled_train:
        raise _no_labels(cls.name, recipe.data.source)
    duplicates = _duplicates(recipe, data, world) if data_read else Duplicates()
    # files read as their first frame: the main process says so, as for duplicates
    read_here = data_read and world.is_main
    frames = multi_frame_files(data, recipe.data.resolved_root) if read_here else MultiFrame()
    torch.manual_seed(rt.seed)
    student, teacher = _nets(recipe, cls, len(data.classes))
    if recipe.schedule.batch_size == 1 and has_batchnorm(student.module):  # was a traceback
        raise DistillError(  # from inside the first step, once a feature map is down to 1x1
            "batch size 1: the student's batch norm cannot train on one image at a time",
            "schedule.batch_size",
            "set schedule.batch_size=2 or more",
        )
    _channels_fit(data.train.channels, student, teacher)
    sync_bn = _place(student, teacher, rt, device, world, channels_last)

    sizes = [net.info.input_size for net in (student, teacher) if net is not None]
    view_size = (max(s[0] for s in sizes), max(s[1] for s in sizes))
    train_stream, val_stream, test_stream = _streams(recipe, data, device, world, max(view_size))
    length = RunLength.of(recipe.schedule, train_stream.steps_per_epoch)
    try:  # a steps-long run knows its epochs only now
        recipe.schedule.check_epochs(length.epochs)
    except ValueError as exc:
        raise DistillError(str(exc), "schedule", "fix the recipe or the --set value") from None
    ctx = MethodContext(
        student,
        teacher,
        BatchAugment(view_size, **recipe.augment.model_dump(), compile=rt.compile),
        channels_last,
        train_stream=train_stream,
        cache_dir=recipe.output.dir / ".cache",
        epochs=length.epochs,
    )
    method = create_method(recipe.method, ctx)
    autocast = torch.bfloat16 if precision == "bf16" else None
    return Setup(
        recipe,
        device,
        autocast,
        channels_last,
        data,
        student,
        teacher,
        method,
        train_stream,
        val_stream,
        length,
        world,
        sync_bn,
        data_read,
        test_stream,
        duplicates,
        frames,
    )


def check_method(recipe: Recipe) -> None:
    """Refuse, from the recipe alone, what the method would refuse once built: a method that
    needs labels on an unlabeled `data.distill_dir`, and each method's own
    `Method.check_recipe` (stage_by_stage's stage counts and length, early-stopped KD's stop
    epoch, fixed teacher targets on streamed data). `build` calls it before the data's scan
    and any weights file, so `--dry-run` refuses what the run would; benchmarks call it for
    every row before their teacher trains."""
    cls = method_class(recipe.method.name)
    if cls.needs_labels and recipe.data.distill_dir is not None:
        raise _no_labels(cls.name)
    cls.check_recipe(recipe.method, recipe)


def _no_labels(name: str, source: str | None = None) -> DistillError:
    """An unlabeled `data.distill_dir`, or (with `source`) an unlabeled streamed training split:
    each named as what it is (a shard split without `.cls` members was called distill_dir)."""
    if source in ("shards", "hf_dataset"):
        how = "{key}.cls members" if source == "shards" else "its data.label_column"
        return DistillError(
            f"method {name!r} needs labels but the training split has none ({source})",
            "data.train_dir",
            f"label it ({how}), or use method.name: function_matching (it reads no labels)",
        )
    return DistillError(
        f"method {name!r} needs labels but data.distill_dir has none",
        "data.distill_dir",
        "use method.name: function_matching (it reads no labels), or drop data.distill_dir",
    )


def _nets(recipe: Recipe, cls: type[Method], data_classes: int) -> tuple[Net, Net | None]:
    """Teacher (when the method has one) and student, their class counts checked."""
    teacher = None
    if cls.needs_teacher:
        teacher = create_teacher(recipe.teachers, data_classes)
        t_classes = teacher.info.num_classes
        if cls.needs_labels and t_classes != data_classes:
            raise DistillError(
                f"the teacher predicts {t_classes} classes but the data has {data_classes}",
                "teacher.num_classes",
                f"{cls.name!r} mixes labels with the teacher's outputs: use the same classes",
            )
        s_classes = recipe.student.num_classes or t_classes
        if s_classes != t_classes:
            raise DistillError(
                f"student has {s_classes} classes but the teacher predicts {t_classes}",
                "student.num_classes",
                "distillation matches the teacher's outputs: use the teacher's class count",
            )
    else:
        s_classes = infer_num_classes(recipe.student, data_classes)
        if cls.needs_labels and s_classes != data_classes:
            # a supervised recipe calls its model `model` (or `student`): name what it wrote
            raise DistillError(
                f"model has {s_classes} classes but the data has {data_classes}",
                "model.num_classes",
                f"set model.num_classes: {data_classes} (a pretrained model gets a new head; "
                "a checkpoint's head of another size loads with model.strict: false)",
            )
    return create_net(recipe.student, s_classes, role="student"), teacher


def _channels_fit(have: int, student: Net, teacher: Net | None) -> None:
    """Each model takes the data's channels (`view.channels_fit`): `in_chans: 4` (an RGBA or
    RGB-NIR model) on RGB photos passed `--dry-run` and was a ValueError traceback at the
    first step. An ensemble's members are fed one by one, so each is checked."""
    # a recipe without a teacher calls its model `model` (as `_nets` names model.num_classes)
    infos = [("student.in_chans" if teacher is not None else "model.in_chans", student.info)]
    if teacher is not None:
        members = getattr(teacher.module, "infos", None)
        if members is None:
            infos.append(("teacher.in_chans", teacher.info))
        else:
            infos += [(f"teacher.{i}.in_chans", info) for i, info in enumerate(members)]
    for key, info in infos:
        if not channels_fit(have, info.in_chans):
            raise DistillError(
                f"{info.name} takes {info.in_chans}-channel images and the data has {have} "
                "channels (grayscale feeds any model, RGB a 1-channel one too)",
                key,
                f"set {key}: {have}"
                + (
                    f", or use {info.in_chans}-channel data"
                    if info.in_chans in DATA_CHANNELS
                    else f" (distill's data has {' or '.join(map(str, DATA_CHANNELS))} channels: "
                    "a photo is decoded to RGB, an RGBA one composited on white, docs/data.md)"
                ),
            )


def _place(
    student: Net,
    teacher: Net | None,
    rt: RuntimeSpec,
    device: torch.device,
    world: World,
    channels_last: bool,
) -> bool:
    """Nets on the device (probed, channels_last), then synced BN, DDP and compile as asked.

    Returns whether BatchNorm statistics are synced across processes.
    """
    for role, net in (("student", student), ("teacher", teacher)):
        if net is not None:
            net.module.to(device)
            probe(net, role, device)
            if channels_last:
                net.module.to(memory_format=torch.channels_last)
    sync_bn = world.distributed and (
        rt.sync_bn if rt.sync_bn is not None else has_batchnorm(student.module)
    )
    if sync_bn:
        student.module = sync_batchnorm(student.module, device)
    if world.distributed and joined():  # not joined: a plan, of the run these processes make
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        student.runner = DistributedDataParallel(student.module, device_ids=ids)
    if rt.compile:
        for net in (student, teacher):
            if net is not None:
                wrapped = net.module if net.runner is None else net.runner
                net.runner = torch.compile(wrapped, mode=rt.compile_mode)
    return sync_bn


def _streams(
    recipe: Recipe, data: DataBundle, device: torch.device, world: World, view_side: int
) -> tuple[Stream, Stream, Stream | None]:
    """The training stream (this process's share), the validation stream (the holdout when
    there is one) and the test stream (only with a holdout)."""
    sched, dspec, rt = recipe.schedule, recipe.data, recipe.runtime
    # photos: training crops are drawn from the whole image (longer side at load_size), the
    # evaluation view is a centre square (shorter side at load_size)
    train_load, val_load = load_sizes(view_side, dspec.load_size)
    common = {
        "device": device,
        "seed": rt.seed,
        "workers": dspec.resolved_workers,
        "skip_bad": dspec.on_bad_image == "skip",
        "decode_on_device": dspec.decode == "device"
        or (dspec.decode == "auto" and device.type == "cuda"),
    }
    # one shape for both kinds of data: a streamed split (ShardStream) takes its shuffle buffer
    shards = isinstance(data.train, ShardSet)
    make = ShardStream if shards else BatchStream
    kw = {"buffer": dspec.shuffle_buffer, **common} if shards else common
    train_stream = make(
        data.train,
        sched.batch_size,
        rank=world.rank,
        world=world.size,
        load_size=train_load,
        fit="whole",
        **kw,
    )
    eval_batch = sched.eval_batch_size or sched.batch_size
    # a streamed evaluation leaves bad samples out, so it needs no stand-in from the batch
    eval_kw = {**kw, "evaluated": True} if shards else kw
    val, test = (
        make(split, eval_batch, shuffle=False, drop_last=False, load_size=val_load, **eval_kw)
        if split is not None
        else None
        for split in (data.val, data.test)
    )
    assert val is not None
    return train_stream, val, test


def _planned_data(recipe: Recipe, needs_teacher: bool, plan_only: bool) -> tuple[DataBundle, bool]:
    """The run's data and whether it was read: a plan of a streamed source whose files are
    not here counts the recipe's `data.train_images`/`val_images` instead."""
    dspec = recipe.data
    try:
        return _matched_data(recipe, recipe.runtime.seed, needs_teacher), True
    except DistillError:
        root = dspec.resolved_root
        if not plan_only or dspec.source not in ("shards", "hf_dataset") or root is None:
            raise
        if root.exists() or dspec.train_images is None or dspec.val_images is None:
            raise
    from distill_cli.data.streamed import unread_splits

    specs = [*recipe.teachers, recipe.student] if needs_teacher else [recipe.student]
    classes = next((s.num_classes for s in specs if s.num_classes), None)
    if classes is None:
        raise DistillError(
            "a plan without the data needs the class count",
            "student.num_classes",
            "set student.num_classes to the data's class count",
        )
    sizes = (dspec.train_images, dspec.val_images)
    parts = (dspec.train_dir, dspec.val_dir, root, sizes, classes, dspec.holdout)
    train, val, test = unread_splits(*parts)
    return DataBundle(train=train, val=val, test=test), False


def _duplicates(recipe: Recipe, data: DataBundle, world: World) -> Duplicates:
    """The same image in train and an evaluated split, or in two classes: looked for unless
    `data.on_duplicates: off`, refused with `error` (before any model is built). Warnings are
    the main process's to print and record: the others do not read the files for them."""
    how = recipe.data.on_duplicates
    if how == "off" or (how == "warn" and not world.is_main):
        return Duplicates()
    found = find_duplicates(data, recipe.data.resolved_root)
    if how == "error":
        found.refuse()
    return found


def _matched_data(recipe: Recipe, seed: int, needs_teacher: bool) -> DataBundle:
    """The data with its labels in the order the teacher's (or the model's) outputs follow."""
    data = build_data(**recipe.data.data_args(), seed=seed)
    if needs_teacher:
        names = model_class_names(recipe.teachers, "teacher") or timm_folder_names(
            recipe.teachers, data.classes, recipe.data.class_map
        )
        data = align_classes(data, names, recipe.data.class_map, "teacher")
        # a student started from a checkpoint must already follow that order
        s_names = model_class_names([recipe.student], "student")
        if s_names is not None and len(s_names) == len(data.classes) and s_names != data.classes:
            raise DistillError(
                "the student's checkpoint orders its classes differently from the teacher",
                "student.checkpoint",
                "start the student from weights trained on the teacher's class order",
            )
        return data
    names = model_class_names([recipe.student], "model")
    return align_classes(data, names, recipe.data.class_map, "model")
