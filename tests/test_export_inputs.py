"""`distill export` driven as deployers and CI pipelines drive it: re-exports into the same
folder, gates written the ways CI writes them. One tiny trained run shared by the module."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_cli import api
from tests.conftest import fm_body, write_recipe

#: An export that checks parity alone, as fast as it goes (no latency, teacher or onnxsim).
QUICK: dict[str, object] = {
    "latency": False,
    "teacher": False,
    "simplify": False,
    "exporter": "torchscript",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch function-matching run on generated images (no teacher checkpoint)."""
    folder = tmp_path_factory.mktemp("export-inputs")
    body = fm_body(folder / "runs", None, epochs=1)
    body["data"]["synthetic"].update(train_size=64, val_size=32)
    body["schedule"]["batch_size"] = 32
    return Path(api.run(write_recipe(folder, "fm", body)).run_dir)


def test_a_re_export_removes_the_previous_exports_variants(run: Path, tmp_path: Path) -> None:
    """An int8 file from an export with --quantize int8 is not left beside the report of a
    later export without it: CI uploads the folder, and nothing checked that file."""
    out = tmp_path / "export"
    first = api.export(run, out=out, quantize="int8", calib_images=16, **QUICK)
    assert (out / "model.int8.onnx").is_file() and "int8" in first.variants
    second = api.export(run, out=out, **QUICK)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "model.onnx",
        "report.json",
    ]
    assert second.variants == {}
    assert any("removed model.int8.onnx" in n for n in second.to_dict()["source"]["notes"])


def test_a_folder_opened_with_force_keeps_the_users_own_model_files(
    run: Path, tmp_path: Path
) -> None:
    """`--force` lets an export write into a folder of the user's; a `model.int8.onnx` of
    theirs there is not an earlier export's leftover and is not removed."""
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "model.int8.onnx").write_bytes(b"the user's own file")
    api.export(run, out=out, force=True, **QUICK)
    assert (out / "model.int8.onnx").read_bytes() == b"the user's own file"


@pytest.mark.parametrize(
    ("flag", "value", "advice"),
    [
        ("--min-top1", "0.9", "give a percentage: 90 for 90%"),
        ("--min-top1", "1", "give a percentage: 100 for 100%"),
        ("--min-variant-agreement", "0.99", "give a percentage: 99 for 99%"),
    ],
)
def test_a_percent_gate_written_as_a_fraction_is_refused(
    flag: str, value: str, advice: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--min-top1 0.9` (a CI config holding 90% as a fraction) was a 0.9% floor that every
    file passed; it is refused before any work, saying what to write, on the CLI and the API."""
    from distill_cli.cli.entry import entry
    from distill_cli.errors import DistillError

    args = ["export", "test_resnet", "--input-size", "32", "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as info:
        entry([*args, "--quantize", "int8", flag, value])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and f"({flag})" in err[0] and advice in err[0], err
    assert not (tmp_path / "x").exists()  # refused before any work
    key = flag.removeprefix("--").replace("-", "_")
    with pytest.raises(DistillError, match=advice):
        api.export("test_resnet", input_size=32, quantize="int8", **{key: float(value)})


def test_a_zero_or_a_real_percentage_gate_is_taken() -> None:
    from distill_cli.export.gates import Gates

    for value in (0, 0.0, 1.5, 90, 100):
        Gates(min_top1=value, min_variant_agreement=value).validate(["int8"], latency=False)


def test_a_folder_that_is_not_a_run_is_refused_naming_what_to_pass(
    run: Path, tmp_path: Path
) -> None:
    """The advice was "pass runs/<name>" whatever was given; a run's export/ or checkpoints/
    folder, a folder of runs, and a run that stopped before its best checkpoint now name the
    path that works, for `distill export` and `distill bench latency` alike."""
    import shutil

    from distill_cli.errors import DistillError

    runs = tmp_path / "runs"
    copy = runs / "r"
    shutil.copytree(run, copy)
    (copy / "export").mkdir()
    (copy / "export" / "model.int8.onnx").write_bytes(b"")
    (copy / "export" / "model.onnx").write_bytes(b"")
    stopped = runs / "stopped"
    shutil.copytree(run, stopped)
    (stopped / "checkpoints" / "best.safetensors").unlink()
    cases = {
        copy / "export": f"pass the run folder {copy} (to time an exported file alone: "
        f"distill bench latency {copy / 'export' / 'model.onnx'})",
        copy / "checkpoints": f"pass the run folder {copy}",
        runs: f"pass one of the runs in it: {copy}, {stopped}",
        stopped: "finish (or --resume) the run first, or pass its last checkpoint, "
        f"{stopped / 'checkpoints' / 'last.safetensors'}",
    }
    for source, advice in cases.items():
        for call in (api.export, api.bench_latency):
            with pytest.raises(DistillError) as info:
                call(source)
            assert info.value.hint == advice, (call, source, str(info.value))
    # the advice works: the last checkpoint it names exports
    last = api.export(stopped / "checkpoints" / "last.safetensors", out=tmp_path / "o", **QUICK)
    assert last.parity_passed


def test_a_run_whose_images_are_gone_says_how_to_point_it_at_them(
    run: Path, tmp_path: Path
) -> None:
    """Data that moved without the run: parity runs on random inputs with a note, and the note
    said "check data.root" (a recipe key of the run's saved recipe, which an export never
    reads again); it now names --recipe, and following it checks parity on the images."""
    import yaml

    from tests.conftest import class_jpeg

    recipe = tmp_path / "data.yaml"
    body = yaml.safe_load((run / "recipe.yaml").read_text())
    body["data"] = {"source": "image_folder", "root": str(tmp_path / "images"), "workers": 0}
    recipe.write_text(yaml.safe_dump(body))
    report = api.export(run, recipe=recipe, out=tmp_path / "o", **QUICK)
    (note,) = [n for n in report.notes if n.startswith("no validation data")]
    assert "pass --recipe R" in note and "check data.root" not in note, note
    assert report.to_dict()["parity"]["inputs"]["kind"] == "random"
    for split in ("train", "val"):
        for label in range(4):
            folder = tmp_path / "images" / split / f"class_{label}"
            folder.mkdir(parents=True)
            for i in range(2):
                (folder / f"{i}.jpg").write_bytes(class_jpeg(label % 3, i))
    report = api.export(run, recipe=recipe, out=tmp_path / "o", **QUICK)
    assert report.to_dict()["parity"]["inputs"]["kind"] == "validation"
    assert not [n for n in report.notes if n.startswith("no validation data")]


def test_a_checkpoint_under_another_timm_name_is_refused_naming_its_model(
    run: Path, tmp_path: Path
) -> None:
    """`distill export test_resnet --checkpoint <a test_efficientnet run's best>` failed with
    "73 missing, 83 unexpected keys ... strict: false loads only the matching keys", a recipe
    key neither command has; the side file names the model, so the refusal says so. A plain
    state dict without one names its real path, not "FILE"."""
    import safetensors.torch
    import torch

    from distill_cli.errors import DistillError

    best = run / "checkpoints" / "best.safetensors"
    for call in (api.export, api.bench_latency):
        with pytest.raises(DistillError) as info:
            call("test_resnet", checkpoint=best)
        assert "saved from test_efficientnet (its side file), not test_resnet" in str(info.value)
        assert "test_efficientnet with --checkpoint" in (info.value.hint or "")
    plain = tmp_path / "plain.pth"
    torch.save(safetensors.torch.load_file(best), plain)
    with pytest.raises(DistillError) as info:
        api.export(plain)
    assert f"distill export MODEL --checkpoint {plain}" in (info.value.hint or "")
    # what it says works: the timm name with the file
    assert api.export(
        "test_efficientnet", checkpoint=plain, out=tmp_path / "o", **QUICK
    ).parity_passed


def test_a_quoted_tilde_is_the_home_folder_in_every_path(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out "~/artifacts"` (quoted in a CI file, so no shell expanded it) wrote into a folder
    named "~" in the working directory, and a SOURCE, --onnx or bench FILE under "~" was "not
    found"; recipes expand "~", and now so do the export's and bench's paths."""
    monkeypatch.setenv("HOME", str(run.parent))
    monkeypatch.chdir(tmp_path)
    report = api.export(f"~/{run.name}", out="~/artifacts", **QUICK)
    onnx = run.parent / "artifacts" / "model.onnx"
    assert report.onnx == onnx and onnx.is_file()
    assert not (tmp_path / "~").exists()
    again = api.export(run, onnx="~/artifacts/model.onnx", out=tmp_path / "o", **QUICK)
    assert again.parity_passed
    timing = {"warmup": 1, "runs": 2, "min_time_s": 0, "threads": 1, "batch": 2}
    bench = api.bench_latency("~/artifacts/model.onnx", **timing)
    assert bench.latency_of("onnxruntime").p50_ms > 0


@pytest.mark.parametrize(
    ("source", "words", "hint"),
    [
        ("my-run", "no run folder or file 'my-run' here", "runs/NAME"),
        ("resnet18x", "no run folder or file 'resnet18x' here", "close matches: resnet18"),
        ("timm/resnet18.a1_in1k", "is a Hugging Face Hub id", "pass its folder as SOURCE"),
        ("hf-hub:timm/resnet18.a1_in1k", "is a Hugging Face Hub id", "pass its folder as SOURCE"),
    ],
)
def test_a_source_that_is_nothing_here_says_so_for_export_and_bench(
    source: str, words: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distill export my-run` from the wrong folder said "unknown timm model 'my-run' (model)",
    a recipe key the command has not; a Hub id copied from its page was "SOURCE not found" or
    told to write `pretrained: true`, which export has no flag for."""
    from distill_cli.errors import DistillError
    from distill_cli.export.source import resolve_source

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DistillError) as caught:
        resolve_source(source)
    assert words in caught.value.what and caught.value.where == "SOURCE"
    assert hint in (caught.value.hint or "")
