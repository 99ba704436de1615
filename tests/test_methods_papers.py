"""The papers' other methods and ablations: KD, ESKD, stage-by-stage, fixed teacher, ensembles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from distill_cli import api
from distill_cli.data.augment import BatchAugment
from distill_cli.errors import DistillError
from distill_cli.methods import MethodContext, create_method, kd_loss
from distill_cli.methods.eskd import ESKDParams
from distill_cli.methods.function_matching import FunctionMatchingParams
from distill_cli.models.create import Ensemble, create_teacher
from distill_cli.models.view import model_view
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.sections import AugmentSpec, ModelSpec
from distill_cli.train.build import build
from tests.conftest import fm_body, write_recipe
from tests.test_methods import _batch, _net, _unnormalize

FULL_VIEW = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_kd_loss_weighs_labels_and_teacher() -> None:
    torch.manual_seed(0)
    student, teacher = _net(8, (0.0,), (1.0,)), _net(8, (0.0,), (1.0,))
    ctx = MethodContext(student, teacher, BatchAugment((8, 8), **FULL_VIEW.model_dump()))
    params = ESKDParams(alpha=0.3, temperature=4.0, kd_stop_epoch=2)
    method = create_method(params, ctx)
    labels = torch.tensor([1, 0, 4, 2])
    batch = _batch(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8), labels)

    def parts() -> tuple[torch.Tensor, torch.Tensor]:
        s = student.module.head(student.module.seen.mean(dim=(1, 2, 3))[:, None])
        t = teacher.module.head(student.module.seen.mean(dim=(1, 2, 3))[:, None])
        return F.cross_entropy(s, labels), kd_loss(s, t, 4.0)

    out = method.step(batch, epoch=1)  # last KD epoch
    ce, kd = parts()
    torch.testing.assert_close(out.loss, 0.3 * ce + 0.7 * kd)
    teacher.module.seen = None
    out = method.step(batch, epoch=2)  # the stop epoch: labels only, teacher not run
    ce, _ = parts()
    torch.testing.assert_close(out.loss, ce)
    assert teacher.module.seen is None and "kd" not in out.logs


def test_eskd_switch_is_visible_in_metrics(tmp_path: Path, trained_teacher: Path) -> None:
    body = fm_body(tmp_path / "runs", trained_teacher, epochs=3)
    body["method"] = {"name": "eskd", "alpha": 0.5, "kd_stop_epoch": 2}
    api.run(write_recipe(tmp_path, "eskd", body))
    records = _records(tmp_path / "runs" / "eskd")
    phases = [(r["epoch"], r["phase"]) for r in records if r["kind"] == "phase"]
    assert phases == [(0, "kd"), (2, "ce")]
    trains = [r for r in records if r["kind"] == "train"]
    assert all("kd" in r for r in trains if r["epoch"] < 2)
    assert all("kd" not in r for r in trains if r["epoch"] >= 2)


def test_views_independent_differ_consistent_match() -> None:
    torch.manual_seed(1)
    student = _net(16, (0.5,) * 3, (0.5,) * 3)
    teacher = _net(16, (0.4,) * 3, (0.3,) * 3)
    ctx = MethodContext(student, teacher, BatchAugment((16, 16)))
    images = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    for views, same in (("independent", False), ("consistent", True)):
        method = create_method(FunctionMatchingParams(views=views, mixup=True), ctx)
        method.step(_batch(images), 0)
        s_px = _unnormalize(student.module.seen, student.info)
        t_px = _unnormalize(teacher.module.seen, teacher.info)
        assert torch.allclose(s_px, t_px, atol=1e-5) is same, views


def test_fixed_teacher_cache_is_built_once_and_reused(
    tmp_path: Path, trained_teacher: Path
) -> None:
    body = fm_body(tmp_path / "runs", trained_teacher, epochs=2)
    body["method"] = {"name": "function_matching", "mixup": False, "teacher_targets": "fixed"}
    recipe = load_recipe(write_recipe(tmp_path, "fixed", body))
    setup = build(recipe)
    calls = []
    setup.teacher.module.register_forward_hook(lambda *_: calls.append(1))
    method = setup.method
    assert method.on_epoch_start(0) == {"teacher_cache": "built"}
    built = len(calls)
    assert built == 128 // 32  # every training image through the teacher exactly once
    batch = next(iter(setup.train_stream.epoch(1)))
    assert method.on_epoch_start(1) == {}  # second epoch: reused in memory
    out = method.step(batch, 1)
    assert len(calls) == built, "no teacher forward once targets are cached"
    # targets are the teacher's centre-crop predictions of exactly these images
    from distill_cli.models.view import eval_pixels, normalize

    with torch.no_grad():
        x = normalize(eval_pixels(batch.images, setup.teacher.info), setup.teacher.info)
        expected = setup.teacher.module(x)
    torch.testing.assert_close(method.fixed[batch.index], expected, atol=1e-5, rtol=1e-5)
    assert out.loss.isfinite()
    # a second run with the same teacher and data loads the file instead of recomputing
    again = build(load_recipe(write_recipe(tmp_path, "fixed2", body)))
    assert again.method.on_epoch_start(0) == {"teacher_cache": "loaded"}
    files = list((tmp_path / "runs" / ".cache" / "teacher_targets").iterdir())
    assert len(files) == 1


def test_fixed_teacher_refuses_mixup() -> None:
    with pytest.raises(ValueError, match="mixup: false"):
        FunctionMatchingParams(teacher_targets="fixed", mixup=True)


def test_ensemble_target_is_the_mean_of_members_logits() -> None:
    torch.manual_seed(2)
    specs = [
        ModelSpec(model="test_resnet", num_classes=4, input_size=32),
        ModelSpec(
            model="test_efficientnet", num_classes=4, input_size=24, mean=(0.3,) * 3, std=(0.2,) * 3
        ),
    ]
    teacher = create_teacher(specs, None)
    assert isinstance(teacher.module, Ensemble) and teacher.info.input_size == (32, 32)
    teacher.module.eval()
    pixels = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        got = teacher(model_view(pixels, teacher.info))
        members = [
            m(model_view(pixels, info))
            for m, info in zip(teacher.module.members, teacher.module.infos, strict=True)
        ]
    torch.testing.assert_close(got, (members[0] + members[1]) / 2)


def test_ensemble_recipe_runs(tmp_path: Path, trained_teacher: Path) -> None:
    body = fm_body(tmp_path / "runs", trained_teacher, epochs=1)
    body["teacher"] = [
        body["teacher"],
        {"model": "test_efficientnet", "num_classes": 4, "input_size": 28},
    ]
    summary = api.run(write_recipe(tmp_path, "ens", body))
    assert summary.teacher.model == "test_resnet+test_efficientnet"
    assert summary.agreement_top1 is not None


def _stage_setup(tmp_path: Path, trained_teacher: Path, **method):
    body = fm_body(tmp_path / "runs", trained_teacher, epochs=3)
    body["student"] = {"model": "test_resnet", "input_size": 32}
    body["method"] = {"name": "stage_by_stage", "stage_map": [[1, 1], [3, 3]], **method}
    return body


def test_stage_by_stage_freezes_what_it_should(tmp_path: Path, trained_teacher: Path) -> None:
    torch.manual_seed(0)
    setup = build(
        load_recipe(write_recipe(tmp_path, "sbs", _stage_setup(tmp_path, trained_teacher)))
    )
    method, student = setup.method, setup.student.module
    opt = torch.optim.AdamW(method.trainable().parameters(), lr=1e-2, weight_decay=0.1)
    batch = next(iter(setup.train_stream.epoch(0)))
    names = {id(p): n for n, p in student.named_parameters()}

    def train_epoch(epoch: int) -> dict[str, torch.Tensor]:
        method.on_epoch_start(epoch)
        before = {n: p.detach().clone() for n, p in student.named_parameters()}
        buffers = {n: b.clone() for n, b in student.named_buffers()}
        for _ in range(2):
            loss = method.step(batch, epoch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        changed = {n for n, p in student.named_parameters() if not torch.equal(before[n], p)}
        moved_buffers = {n for n, b in student.named_buffers() if not torch.equal(buffers[n], b)}
        return {"changed": changed, "buffers": moved_buffers}

    stage0 = {names[id(p)] for p in method.stage_params[0]}
    stage1 = {names[id(p)] for p in method.stage_params[1]}
    head = {names[id(p)] for p in method.head_params}
    assert stage0 and stage1 and head and not (stage0 & stage1) and not (stage1 & head)
    assert all(n.startswith(("conv1", "bn1", "layer1")) for n in stage0)
    assert all(n.startswith(("layer2", "layer3")) for n in stage1)
    assert head == {"fc.weight", "fc.bias"}

    r0 = train_epoch(0)
    assert r0["changed"] == stage0
    r1 = train_epoch(1)
    assert r1["changed"] == stage1  # stage 0 frozen: bit-identical
    assert not any(b.startswith(("bn1", "layer1")) for b in r1["buffers"])  # frozen BN stats too
    r2 = train_epoch(2)
    assert r2["changed"] == head and r2["buffers"] == set()  # head only, backbone in eval mode


def test_stage_by_stage_run_exports_no_connectors_and_resumes(
    tmp_path: Path, trained_teacher: Path
) -> None:
    body = _stage_setup(tmp_path, trained_teacher)
    summary = api.run(write_recipe(tmp_path, "sbs", body))
    run = tmp_path / "runs" / "sbs"
    best = load_file(str(run / "checkpoints" / "best.safetensors"))
    student_keys = set(timm.create_model("test_resnet", num_classes=4).state_dict())
    assert set(best) == student_keys
    last = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert any(k.startswith("__method__/connectors.") for k in last)
    phases = [r["phase"] for r in _records(run) if r["kind"] == "phase"]
    assert phases == ["stage 0", "stage 1", "head"]
    assert summary.student.top1 is not None


def test_stage_count_mismatch_needs_a_map(tmp_path: Path, trained_teacher: Path) -> None:
    body = _stage_setup(tmp_path, trained_teacher)
    body["student"] = {"model": "test_convnext", "input_size": 32}  # 4 stages vs 5
    body["method"] = {"name": "stage_by_stage"}
    with pytest.raises(DistillError, match="stage counts differ"):
        build(load_recipe(write_recipe(tmp_path, "sbs", body)))
    body["method"] = {"name": "stage_by_stage", "stage_map": [[0, 1], [2, 3]]}
    with pytest.raises(DistillError, match=r"schedule\.epochs=3"):
        build(load_recipe(write_recipe(tmp_path, "sbs", body), ["schedule.epochs=5"]))


def test_stage_by_stage_resume_restores_connectors(tmp_path: Path, trained_teacher: Path) -> None:
    from tests.test_engine import StopAt

    runs = []
    for name, stop in (("a", None), ("b", 6)):
        (tmp_path / name).mkdir()
        body = _stage_setup(tmp_path / name, trained_teacher)
        recipe = write_recipe(tmp_path / name, "sbs", body)
        if stop is not None:
            with pytest.raises(KeyboardInterrupt):
                api.run(recipe, reporter=StopAt(stop))  # in stage 1; last holds stage 0's end
            api.run(recipe, resume=True)
        else:
            api.run(recipe)
        runs.append(
            load_file(str(tmp_path / name / "runs" / "sbs" / "checkpoints" / "last.safetensors"))
        )
    a, b = runs
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("__optimizer__"))
