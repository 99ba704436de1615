"""The classes the architecture sweep found (benchmarks/arch_sweep.py), one representative each.

- A model built for one input size (EfficientFormer: 7x7 attention biases, whatever `img_size`
  says) refused at another size before training, in one line naming timm's size for it.
- An output that is not one row of logits per image (inception_v3 with `aux_logits` returns a
  pair) refused at build, naming the kwarg, instead of a traceback at the first evaluation.
- A checkpoint of a fixed-size model (ViT) made at another input size: the error says so and
  names `input_size`, not num_classes.
- `distill students` whose every candidate fails to export at the size: exit 2 with the first
  reason, not "nothing was measured, give it more time" (exit 3).
- stage_by_stage with an ensemble teacher (averaged logits have no stages): one line naming the
  teacher and what to use instead, before the run folder exists (it said "exposes no stages").
- The families that pass, as a user runs them: distilled DeiT (two heads), LeViT, Swin at a size
  off its window grid, reparameterizable MobileOne, and a grayscale ViT: a run, then an export
  whose parity gate holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import timm
import torch

from distill_cli import api
from distill_cli.cli.entry import entry
from distill_cli.errors import DistillError
from tests.conftest import write_recipe


def _body(
    out: Path, student: dict[str, Any], teacher: dict[str, Any] | list[dict[str, Any]] | None = None
) -> dict:
    return {
        "teacher": teacher or {"model": "test_resnet", "input_size": 32, "num_classes": 4},
        "student": student,
        "data": {
            "source": "synthetic",
            "synthetic": {"num_classes": 4, "train_size": 16, "val_size": 8, "image_size": 48},
        },
        "method": {"name": "function_matching"},
        "schedule": {"epochs": 1, "batch_size": 8, "log_every": 1},
        "runtime": {"device": "cpu"},
        "output": {"dir": str(out)},
    }


def test_a_fixed_size_model_at_another_size_is_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _body(tmp_path / "runs", {"model": "efficientformer_l1", "input_size": 64})
    recipe = write_recipe(tmp_path, "fixed", body)
    with pytest.raises(SystemExit) as info:
        entry(["run", str(recipe)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the student efficientformer_l1 fails")
    assert "input_size: 224" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "runs" / "fixed" / "checkpoints").exists()  # nothing trained


def test_an_auxiliary_head_output_is_refused_at_build(tmp_path: Path) -> None:
    student = {"model": "inception_v3", "input_size": 299, "kwargs": {"aux_logits": True}}
    recipe = write_recipe(tmp_path, "aux", _body(tmp_path / "runs", student))
    with pytest.raises(DistillError) as info:
        api.plan(recipe)  # the probe runs in --dry-run too: before any data or training
    message = str(info.value)
    assert "inception_v3 returns 2 outputs" in message and "aux_logits" in message
    assert info.value.code == 2


def test_a_vit_checkpoint_made_at_another_size_names_input_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "vit.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224", num_classes=4).state_dict(), path)
    teacher = {"model": "deit_tiny_patch16_224", "checkpoint": str(path), "input_size": 32}
    student = {"model": "test_resnet", "input_size": 32}
    recipe = write_recipe(tmp_path, "vit", _body(tmp_path / "runs", student, teacher))
    with pytest.raises(DistillError) as info:
        api.plan(recipe)
    message = str(info.value)
    assert "pos_embed" in message and "another input size" in message
    assert "set input_size" in message and "num_classes" not in message.split(" - ")[1]


def test_students_whose_every_candidate_fails_is_bad_input_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["students", "resnet50", "--candidates", "efficientformer_l1", "--input-size", "64"]
    args += ["--max-latency-ms", "1000", "--max-ratio", "100", "--threads", "1", "-q"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    with pytest.raises(SystemExit) as info:
        entry(args)
    assert info.value.code == 2  # not 3, "give it more time": more time cannot help
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no candidate could be exported at 64 px (1 failed;")
    assert "efficientformer_l1: the model does not run at --input-size 64" in err
    assert "RuntimeError" in err and "--time-budget" not in err


def test_stage_by_stage_with_an_ensemble_teacher_is_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    member = {"input_size": 32, "num_classes": 4, "check_accuracy": False}
    teachers = [{"model": "test_resnet", **member}, {"model": "test_convnext", **member}]
    body = _body(tmp_path / "runs", {"model": "test_resnet", "input_size": 32}, teachers)
    body["method"] = {"name": "stage_by_stage", "stage_map": [[0, 0]]}
    body["schedule"]["epochs"] = 2
    with pytest.raises(SystemExit) as info:
        entry(["run", str(write_recipe(tmp_path, "sbs", body))])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: stage_by_stage mimics one teacher's")
    assert "ensemble of 2 (test_resnet+test_convnext) (teacher) - name one teacher" in err[0]
    assert not (tmp_path / "runs" / "sbs").exists()  # refused before the run folder


#: (timm name, input side, extra student keys, export options): the families whose build the
#: sweep exercises hardest, each run 1 epoch and exported with the parity gate on.
FAMILIES: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = [
    ("deit_tiny_distilled_patch16_224", 32, {}, {}),  # two heads, averaged in eval
    ("levit_128s", 64, {}, {}),  # attention biases follow img_size; BN in the MLPs
    ("swin_tiny_patch4_window7_224", 48, {}, {"exporter": "torchscript"}),  # 12x12 grid, 7 win
    ("mobileone_s0", 32, {}, {"reparam": True}),  # reparameterized before export
    ("test_vit", 32, {"in_chans": 1}, {}),  # grayscale: 1-channel patch embedding
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size", "extra", "export"), FAMILIES, ids=[f[0] for f in FAMILIES]
)
def test_family_runs_and_exports_with_parity(
    name: str, size: int, extra: dict[str, Any], export: dict[str, Any], tmp_path: Path
) -> None:
    body = _body(tmp_path / "runs", {"model": name, "input_size": size, **extra})
    summary = api.run(write_recipe(tmp_path, "fam", body))
    assert summary.student.top1 is not None
    report = api.export(
        tmp_path / "runs" / "fam", latency=False, simplify=False, images=8, teacher=False, **export
    )
    # the gate's bound is relative (atol + rtol*|logit|): a 1-epoch MobileOne at 32 px has
    # logits in the millions, where ONNX and PyTorch differ by float32 rounding, not by a bug
    assert report.parity_passed and report.parity.top1_agreement == 100.0
