"""The recipe's input size reaches the model (issue 12, item 2).

Models with fixed-size position embeddings or windows (ViT, DeiT, Swin, LeViT) are built for
one size: `input_size` must reach timm as `img_size` in `run`, `train` and `export`, and a size
the model cannot take shows at build time (`--dry-run` included) as one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.models.create import Net, create_net
from distill_cli.models.probe import probe
from distill_cli.models.sizes import accepts_img_size
from distill_cli.models.view import ModelInfo
from distill_cli.recipe.sections import ModelSpec
from tests.conftest import fm_body, write_recipe


def _vit_student(tmp_path: Path, size: int) -> Path:
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["student"] = {"model": "test_vit", "input_size": size}
    body["data"]["synthetic"]["train_size"] = 32
    body["schedule"] = {"steps": 1, "batch_size": 16}
    return write_recipe(tmp_path, "vit", body)


def test_accepts_img_size_tells_vits_from_convnets() -> None:
    assert accepts_img_size("test_vit") and accepts_img_size("deit_tiny_patch16_224")
    assert not accepts_img_size("test_resnet") and not accepts_img_size("resnet18")


def test_run_trains_a_vit_at_the_recipe_size(tmp_path: Path) -> None:
    recipe = _vit_student(tmp_path, 48)  # test_vit's own size is 160
    plan = api.plan(recipe)
    assert plan.student.input_size == (48, 48)
    result = api.run(recipe)  # crashed at step 1 before: a 160x160 position embedding
    assert result.steps == 1


def test_export_builds_a_timm_name_at_input_size() -> None:
    from distill_cli.export.source import resolve_source

    src = resolve_source("test_vit", input_size=48)
    assert tuple(src.student.module.patch_embed.img_size) == (48, 48)
    out = src.student.module(torch.zeros(1, 3, 48, 48))
    assert out.shape[0] == 1


def test_a_size_the_model_cannot_take_is_one_error_at_dry_run(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="test_vit"):
        api.plan(_vit_student(tmp_path, 8))  # smaller than one 16-pixel patch


def test_probe_names_the_role_and_the_size() -> None:
    info = ModelInfo("linear", 4, 3, (32, 32), (0.5,) * 3, (0.5,) * 3, 1.0)
    with pytest.raises(DistillError, match=r"the teacher linear fails on a 3x32x32 input"):
        probe(Net(nn.Linear(5, 4), info), "teacher", torch.device("cpu"))


def test_export_input_sizes_that_were_ignored_or_tracebacks_are_one_line(tmp_path: Path) -> None:
    """`--input-size` with a run or checkpoint was silently ignored (the export came out at
    the trained size and passed); a timm name at a size it builds but cannot run (a ViT at
    33 px) was an AssertionError traceback from the parity check."""
    import timm

    from distill_cli.models.checkpoint import save_weights

    ckpt = tmp_path / "best.safetensors"
    meta = {"model": "test_resnet", "num_classes": 3, "input_size": [32, 32]}
    save_weights(ckpt, timm.create_model("test_resnet", num_classes=3), meta)
    for options in ({"input_size": 7}, {"num_classes": 5}):
        with pytest.raises(DistillError, match="goes with a timm model name") as caught:
            api.export(ckpt, out=tmp_path / "out", latency=False, **options)
        assert caught.value.code == 2 and "\n" not in str(caught.value)
    with pytest.raises(DistillError, match=r"does not run at --input-size 33") as caught:
        api.export("test_vit", input_size=33, out=tmp_path / "vit", latency=False)
    assert caught.value.where == "--input-size" and "divisible by patch size" in str(caught.value)
    assert not (tmp_path / "out").exists()


def _net(model: str, size: int | list[int], in_chans: int = 3) -> Net:
    spec = ModelSpec.model_validate({"model": model, "input_size": size, "in_chans": in_chans})
    return create_net(spec, 4)


def _probe_error(model: str, size: int | list[int], in_chans: int = 3) -> DistillError:
    net = _net(model, size, in_chans)
    with pytest.raises(DistillError) as caught:
        probe(net, "student", torch.device("cpu"))
    return caught.value


def test_a_size_off_the_models_grid_names_the_nearest_sizes_it_runs_at() -> None:
    """A fixed-grid model at a size it cannot run (test_vit's 16-pixel patches at 33 px;
    CrossViT's two grids, HaloNet's blocks in the sweep) said only "fails", leaving the user
    to guess; the nearest sizes it runs at are checked on the meta device and named."""
    err = _probe_error("test_vit", 33)
    assert err.where == "student.input_size" and err.code == 2
    assert "it runs at 32 px and 48 px (the nearest sizes)" in err.what
    assert err.hint.startswith("set input_size: 48 (or another size the model accepts")
    for side in (32, 48):  # the sizes named do run
        probe(_net("test_vit", side), "student", torch.device("cpu"))


def test_a_bare_assert_in_the_model_is_shown_as_its_source_line() -> None:
    """HaloNet's `_assert(H % self.block_size == 0, '')` failed as "AssertionError: " with
    nothing after it; the failing line says what the model needs."""

    class Blocks(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # as timm's halo attention checks its blocks: an AssertionError without a message
            torch._assert(x.shape[-1] % 8 == 0, "")
            return x.mean((2, 3))[:, :2]

    info = ModelInfo("blocks", 2, 3, (36, 36), (0.5,) * 3, (0.5,) * 3, 1.0)
    with pytest.raises(DistillError) as caught:
        probe(Net(Blocks(), info), "student", torch.device("cpu"))
    assert "AssertionError at test_input_size.py:" in caught.value.what
    assert caught.value.what.endswith('torch._assert(x.shape[-1] % 8 == 0, "")')


def test_a_model_that_runs_only_in_rgb_names_in_chans_not_the_size() -> None:
    """CSATv2's DCT stem takes 3 channels: a grayscale run said "set input_size", the wrong
    key; now the error names in_chans (grayscale images feed a 3-channel model repeated)."""
    err = _probe_error("csatv2", 64, in_chans=1)
    assert err.where == "student.in_chans" and "it runs with 3 channels" in err.what
    assert err.hint.startswith("set in_chans: 3")


def test_a_size_timm_cannot_build_names_the_nearest_sizes_it_builds_and_runs_at() -> None:
    """XCiT asserts at creation that the patch divides `img_size`: at 50 px the error said
    "pick an input size the model supports"; now it names 48 and 64, checked on meta."""
    spec = ModelSpec.model_validate({"model": "xcit_nano_12_p16_224", "input_size": 50})
    with pytest.raises(DistillError) as caught:
        create_net(spec, 4, role="student")
    err = caught.value
    assert "timm cannot build 'xcit_nano_12_p16_224' with img_size=(50, 50)" in err.what
    assert "it runs at 48 px and 64 px (the nearest sizes)" in err.what
    assert err.where == "student.input_size" and err.hint.startswith("set input_size: 64")


def test_a_bare_assert_in_timms_constructor_names_its_line_and_the_recipe_key(
    tmp_path: Path,
) -> None:
    """The size sweep at 80 px: the hybrid ViT's stem asserts, without a message, that its
    patch divides the feature map. The error said "(AssertionError)" and named the key
    `vit_tiny_r_s16_p8_224.input_size` (no recipe has it; `distill export` has no such key
    at all, its flag is --input-size); now the assert's source line, `student.input_size` in a
    recipe and `--input-size` in an export, and the sizes named do build."""
    name = "vit_tiny_r_s16_p8_224"
    spec = ModelSpec.model_validate({"model": name, "input_size": 80})
    with pytest.raises(DistillError) as caught:
        create_net(spec, 4, role="student")
    err = caught.value
    assert "(AssertionError at hybrid_embed.py:" in err.what and "% self.patch_size" in err.what
    assert "it runs at 64 px and 96 px" in err.what
    assert err.where == "student.input_size" and err.hint.startswith("set input_size: 96")
    with pytest.raises(DistillError) as caught:
        api.export(name, input_size=80, out=tmp_path / "out", latency=False)
    err = caught.value
    assert err.where == "--input-size" and "AssertionError at hybrid_embed.py:" in err.what
    assert "it runs at 64 px and 96 px" in err.what and "\n" not in str(err)
    assert not (tmp_path / "out").exists()
    probe(_net(name, 96), "student", torch.device("cpu"))  # the size named runs


def test_students_names_a_bare_asserts_line_for_a_candidate_that_fails() -> None:
    """`distill students`' reason column showed "AssertionError: " for a failure without a
    message (a bare `assert` in export or timing): now its source line, as builds and probes."""
    from distill_cli.students.measure import _reason

    def blocks(side: int) -> None:
        torch._assert(side % 8 == 0, "")  # as timm checks its blocks: no message

    try:
        blocks(36)
    except AssertionError as exc:
        reason = _reason(exc)
    assert reason.startswith("AssertionError at test_input_size.py:")
    assert 'torch._assert(side % 8 == 0, "")' in reason


def test_a_non_square_size_off_the_grid_names_the_square_of_its_longer_side() -> None:
    """The 64x96 screen: Inception-v3 at [64, 96] (its stem needs 75 px a side) was told "it
    runs at 88 px and 104 px": the search skipped the size's longer side as known to fail, as
    it is for a square size, though the square 96 runs and is the nearest. test_vit at [33, 48]
    (16-pixel patches) named 32 and 64; now 32 and 48."""
    err = _probe_error("test_vit", [33, 48])
    assert "on a 3x33x48 input" in err.what and "it runs at 32 px and 48 px" in err.what
    assert err.where == "student.input_size" and err.hint.startswith("set input_size: 48")
    probe(_net("test_vit", 48), "student", torch.device("cpu"))  # the size named runs


def test_a_checkpoint_made_at_another_size_names_that_size(tmp_path: Path) -> None:
    """A fixed-size model's checkpoint made at 160 px, loaded at 64: the error named the size
    only for weight names on a list (pos_embed...), and told a gMLP/ResMLP/TNT user to check
    num_classes; the model is now rebuilt on the meta device until the file fits."""
    import timm

    path = tmp_path / "vit.pth"
    torch.save(timm.create_model("test_vit", num_classes=4).state_dict(), path)  # 160 px
    spec = ModelSpec.model_validate({"model": "test_vit", "input_size": 64, "checkpoint": path})
    with pytest.raises(DistillError) as caught:
        create_net(spec, 4)
    err = caught.value
    assert "it was made for another input size: 160" in err.what
    assert err.hint.startswith("set input_size: 160") and "num_classes" not in err.hint
    spec = ModelSpec.model_validate({"model": "test_vit", "input_size": 160, "checkpoint": path})
    assert create_net(spec, 4).info.input_size == (160, 160)  # the size named loads


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"global_pool": "foo"}, "Invalid pool type: foo"),  # timm's constructor asserts
        ({"act_layer": "nonsense"}, "KeyError: 'nonsense'"),  # was a traceback
        ({"output_stride": 7}, "assert output_stride in (8, 16, 32)"),
    ],
)
def test_kwargs_that_timm_refuses_are_blamed_not_the_input_size(
    kwargs: dict[str, object], says: str
) -> None:
    """A bad `kwargs` value failed the build with "pick an input size the model supports"
    under `student.input_size` (or, for a KeyError, a traceback); the model builds without
    them, so the error names `student.kwargs` and the values."""
    spec = ModelSpec.model_validate({"model": "test_resnet", "input_size": 32, "kwargs": kwargs})
    with pytest.raises(DistillError) as caught:
        create_net(spec, 4, role="student")
    err = caught.value
    assert err.where == "student.kwargs" and says in err.what
    assert "it builds and runs without its kwargs" in err.what and "input size" not in err.hint


def test_kwargs_that_fail_only_when_run_are_blamed_in_the_probe() -> None:
    """`drop_rate` reaches F.dropout at the first forward, where 1.5 fails: the probe said "set
    input_size"; the same model without its kwargs runs, so it names them."""
    spec = ModelSpec.model_construct(
        **{
            **ModelSpec.model_validate({"model": "test_resnet"}).__dict__,
            "kwargs": {"drop_rate": 1.5},
        }
    )
    net = create_net(spec, 4, role="student")
    with pytest.raises(DistillError) as caught:
        probe(net, "student", torch.device("cpu"))
    assert caught.value.where == "student.kwargs" and "drop_rate: 1.5" in caught.value.what


def test_an_ensemble_members_errors_name_its_own_key() -> None:
    """An ensemble's second teacher at a size it cannot take said "the teacher
    test_resnet+test_vit fails on a 3x160x160 input" under `teacher.input_size`, and an unknown
    second model `teacher.model`: each now names the member (`teacher.1...`) and its input."""
    from distill_cli.models.create import create_teacher

    def specs(second: dict[str, object]) -> list[ModelSpec]:
        return [ModelSpec.model_validate(s) for s in ({"model": "test_resnet"}, second)]

    teacher = create_teacher(specs({"model": "test_vit", "input_size": 33}), 4)
    with pytest.raises(DistillError) as caught:
        probe(teacher, "teacher", torch.device("cpu"))
    err = caught.value
    assert err.where == "teacher.1.input_size" and "test_vit fails on a 3x33x33 input" in err.what
    with pytest.raises(DistillError) as caught:
        create_teacher(specs({"model": "test_vitt"}), 4)
    assert caught.value.where == "teacher.1.model"
    probe(
        create_teacher(specs({"model": "test_vit", "input_size": 32}), 4),
        "teacher",
        torch.device("cpu"),
    )
