"""Every command that writes, run in a folder full of a user's things (issue 22, item 5).

The workspace holds what a real project holds next to distill's runs: the user's own files,
folders that look like runs (a `recipe.yaml` beside a `checkpoints/` folder), a folder with
the user's own `model.onnx`, a PNG of theirs, and symlinks planted where distill writes
(`report.html`, a run folder, an `--out` folder, a recipe path). Each writing command (`run`,
`train`, `export`, `report`, `compare --plot`, `students --write-recipe`, `bench`) runs
against it, both as a user would (into its own outputs) and aimed at the user's things. The
property checked after every single command: the whole tree (file contents, modes, link
targets, folders) is unchanged outside the outputs that command is allowed to write, and a
command aimed at a user's thing refuses with one `error:` line and changes nothing at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_cli.cli.entry import entry
from tests.conftest import fm_body, teacher_body, write_recipe


def _tree(root: Path) -> dict[str, str]:
    """Every entry under `root` (links not followed): content + mode, link target, or kind."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            key = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                out[key] = "link->" + os.readlink(path)
            elif stat.S_ISREG(mode):
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest() + oct(mode)
            else:
                out[key] = "dir"
    return out


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def _allowed(path: str, outputs: tuple[str, ...]) -> bool:
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in outputs)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: their files, look-alikes and links, and one finished distill run."""
    w = tmp_path_factory.mktemp("project")
    runs = w / "runs"
    sup = teacher_body(runs, epochs=1)
    sup["data"]["synthetic"].update(train_size=64, val_size=32)
    write_recipe(w, "sup", sup)
    fm = fm_body(runs, runs / "teacher" / "checkpoints" / "best.safetensors", epochs=1)
    fm["data"]["synthetic"].update(train_size=64, val_size=32)
    write_recipe(w, "fm", fm)
    (w / "notes.md").write_text("my notes\n")
    (w / "victim.txt").write_text("must never change\n")
    (w / "mine").mkdir()
    (w / "mine" / "model.onnx").write_bytes(b"my own model")
    (w / "mine" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n my photo")
    (w / "link-out").symlink_to(w / "mine")
    (w / "link.yaml").symlink_to(w / "victim.txt")
    look = runs / "project"  # a recipe and checkpoints: many ML projects look like this
    (look / "checkpoints").mkdir(parents=True)
    (look / "recipe.yaml").write_text("name: project\nlr: 0.1\n")
    (look / "checkpoints" / "epoch1.pt").write_bytes(b"my weights")
    (look / "data.csv").write_text("a,b\n1,2\n")
    (runs / "alias").symlink_to(w / "mine")
    return w


def _distill(project: Path, argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = [a.replace("{w}", str(project)) for a in argv]
    with pytest.raises(SystemExit) as info:
        entry(args)
    out, err = capfd.readouterr()
    return int(info.value.code or 0), out + err


#: (argv, exit code, the paths it may write, relative to the project). In order: later
#: commands use the runs earlier ones made. Code 2 rows aim at a user's thing and must refuse.
COMMANDS: list[tuple[list[str], int, tuple[str, ...]]] = [
    (["train", "{w}/sup.yaml", "-q", "--set", "output.name=teacher"], 0, ("runs/teacher",)),
    (
        ["run", "{w}/fm.yaml", "-q", "--set", "output.name=student"],
        0,
        ("runs/student", "runs/.cache"),
    ),
    (["train", "{w}/sup.yaml", "--overwrite", "--set", "output.name=project"], 2, ()),
    (["train", "{w}/sup.yaml", "--resume", "--set", "output.name=project"], 2, ()),
    (["train", "{w}/sup.yaml", "--set", "output.name=alias"], 2, ()),
    (["train", "{w}/sup.yaml", "--set", "output.dir={w}/notes.md"], 2, ()),
    (
        [
            *["export", "{w}/runs/student", "--no-latency", "--images", "8", "--no-teacher"],
            *["--exporter", "torchscript"],
        ],
        0,
        ("runs/student/export",),
    ),
    (["export", "{w}/runs/student", "--out", "{w}/mine", "--no-latency"], 2, ()),
    (["export", "{w}/runs/student", "--out", "{w}/link-out", "--no-latency"], 2, ()),
    (["report", "{w}/runs/student"], 0, ("runs/student/report",)),
    (["report", "{w}/runs/project"], 2, ()),
    (
        ["compare", "{w}/runs/teacher", "{w}/runs/student", "--plot", "{w}/cmp.png"],
        0,
        ("cmp.png",),
    ),
    (["compare", "{w}/runs/teacher", "{w}/runs/student", "--plot", "{w}/cmp.png"], 0, ("cmp.png",)),
    (["compare", "{w}/runs/teacher", "{w}/runs/student", "--plot", "{w}/mine/photo.png"], 2, ()),
    (["compare", "{w}/runs/teacher", "{w}/runs/student", "--plot", "{w}/notes.md"], 2, ()),
    (
        [
            *["students", "test_resnet", "--max-latency-ms", "10000", "--input-size", "32"],
            *["--candidates", "test_resnet", "--max-ratio", "1", "--runs", "2", "--warmup", "0"],
            *["--cache-dir", "{w}/cache", "--write-recipe", "{w}/student.yaml"],
            *["--min-time", "0", "--data", "synthetic", "--threads", "1"],
            *["--exporter", "torchscript"],
        ],
        0,
        ("student.yaml", "cache"),
    ),
    (
        [
            *["students", "test_resnet", "--max-latency-ms", "10000", "--input-size", "32"],
            *["--candidates", "test_resnet", "--cache-dir", "{w}/cache"],
            *["--write-recipe", "{w}/link.yaml", "--data", "synthetic"],
        ],
        2,
        (),
    ),
    (
        ["bench", "latency", "test_resnet", "--input-size", "32", "--runs", "2", "--warmup", "0"],
        0,
        (),
    ),
    # the measured throughput is kept in distill's cache for later --dry-run cost plans
    (
        ["bench", "train", "{w}/sup.yaml", "--steps", "1", "--warmup", "0"],
        0,
        ("runs/.cache", "cache"),
    ),
]


def test_writing_commands_touch_only_their_own_outputs(
    project: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)  # relative defaults land inside the hashed tree
    monkeypatch.delenv("DISTILL_DEBUG", raising=False)
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(project / "cache"))
    user = _tree(project)
    for argv, code, outputs in COMMANDS:
        before = _tree(project)
        got, text = _distill(project, argv, capfd)
        assert got == code, f"{argv}: {text}"
        assert "Traceback" not in text, text
        changed = _changed(before, _tree(project))
        if code:
            errors = [line for line in text.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, text
            assert not changed, f"{argv} refused but changed {sorted(changed)}"
        stray = {p for p in changed if not _allowed(p, outputs) and not _report_file(p, outputs)}
        assert not stray, f"{argv} changed {sorted(stray)} outside its outputs {outputs}"
    after = _tree(project)
    for key, value in user.items():  # every one of the user's things, byte for byte
        if not key.startswith(("runs/teacher", "runs/student")):
            assert after.get(key) == value, key
    assert (project / "victim.txt").read_text() == "must never change\n"
    assert (project / "mine" / "model.onnx").read_bytes() == b"my own model"
    assert (project / "runs" / "project" / "data.csv").is_file()


def _report_file(path: str, outputs: tuple[str, ...]) -> bool:
    """`distill report` writes report.html, report.md and report_*.png into the run folder."""
    for out in outputs:
        if out.endswith("/report"):
            folder = out.rsplit("/", 1)[0]
            name = path[len(folder) + 1 :] if path.startswith(folder + "/") else ""
            if name in ("report.html", "report.md") or (
                name.startswith("report_") and name.endswith(".png") and "/" not in name
            ):
                return True
    return False


def test_a_link_planted_in_a_run_is_never_written_through(
    project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A finished run whose report.html, metrics.jsonl or figure is a link to a user's file:
    `report` refuses and the linked file keeps its content."""
    source = project / "runs" / "teacher"
    if not source.is_dir():
        pytest.skip("needs the run of the test above")
    victim = tmp_path / "victim.html"
    for name in ("report.html", "report.md", "report_accuracy.png"):
        run = tmp_path / f"run-{name}"
        shutil.copytree(source, run, symlinks=True)
        for old in run.glob("report*"):
            old.unlink()
        victim.write_text("mine")
        (run / name).symlink_to(victim)
        code, text = _distill(project, ["report", str(run)], capfd)
        assert code == 2 and "symlink" in text, text
        assert victim.read_text() == "mine"
        assert not (run / "report.md").exists() or name == "report.md"


class _UpsampleResidual(torch.nn.Module):
    """EfficientFormer-V2's pattern in four layers: a Resize by scales on the dynamic batch,
    added to a residual, then a convolution. ONNX Runtime's symbolic shape inference (the first
    step of `quant_pre_process`) cannot finish on it, and when it gives up it saves
    `sym_shape_infer_temp.onnx` and a `<uuid1>.data` of the weights into the working directory:
    the stray files `distill export --quantize int8` of efficientformerv2_s0 left in the cwd."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 1)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2, mode="bilinear")
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.up(self.down(x))).mean((2, 3))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_export_steps_write_only_their_files_whatever_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export, simplify, fp16 and int8 from a user's folder, with relative paths as `--out out`
    gives them: the folder ends with the user's files and the four model files, nothing else
    (no sym_shape_infer_temp.onnx, no <uuid>.data), and distill's temp folders are gone."""
    from distill_cli.export.onnx_export import export_onnx, simplify
    from distill_cli.export.variants import make_fp16, make_int8

    work, temp = tmp_path / "project", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    (work / "notes.md").write_text("mine\n")
    rng = np.random.default_rng(0)
    np.save(work / "calib.npy", rng.standard_normal((8, 3, 16, 16)).astype(np.float32))

    def calibration() -> Iterator[np.ndarray]:  # reads the caller's relative paths, as recipes do
        data = np.load("calib.npy")
        yield from (data[i : i + 4] for i in range(0, len(data), 4))

    out = Path("out")
    export_onnx(_UpsampleResidual().eval(), (3, 16, 16), out / "model.onnx")
    assert simplify(out / "model.onnx", out / "model.simplified.onnx")["applied"]
    (out / "model.simplified.onnx").replace(out / "model.onnx")  # kept, as parity would
    make_fp16(out / "model.onnx", out / "model.fp16.onnx")
    int8 = make_int8(out / "model.onnx", out / "model.int8.onnx", calibration())
    # the trigger is still there: ONNX Runtime's symbolic shape inference gave up on this graph,
    # and the rest of its pre-processing ran without it
    assert int8["preprocess"]["applied"], int8["preprocess"]
    assert int8["preprocess"]["symbolic_shape_inference"] is False
    assert "symbolic shape inference" in int8["preprocess"]["reason"]
    assert int8["calibration"]["images"] == 8  # read from the caller's cwd
    assert Path.cwd() == work
    assert _files(work) == [
        "calib.npy",
        "notes.md",
        "out/model.fp16.onnx",
        "out/model.int8.onnx",
        "out/model.onnx",
    ]
    left = [p.name for p in temp.rglob("*") if p.name.startswith("distill-") or p.is_file()]
    assert not left, left  # the private folders went with what was dropped in them


def test_private_cwd_goes_back_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard itself: inside, an empty private folder; `callers` is the caller's folder for
    a moment; after (also after an error), the caller's folder again and the private one gone."""
    from distill_cli.files import private_cwd

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="third party"), private_cwd() as cwd:
        private = Path.cwd()
        assert private == cwd.path and private != tmp_path and not any(private.iterdir())
        Path("sym_shape_infer_temp.onnx").write_bytes(b"stray")
        with cwd.callers():
            assert Path.cwd() == tmp_path
        assert Path.cwd() == private
        raise RuntimeError("third party failed")
    assert Path.cwd() == tmp_path
    assert not private.exists()
    assert not any(tmp_path.iterdir())


def test_an_exporter_writes_beside_model_onnx_never_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.onnx writes straight to the name it is given: a Ctrl-C or a kill while it writes
    must leave the previous model.onnx whole, not half a new one, and no staging folder."""
    import distill_cli.export.onnx_export as ox

    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export's model")
    given: list[Path] = []

    def stopped_halfway(module, example, path, *rest):  # type: ignore[no-untyped-def]
        given.append(Path(path))
        Path(path).write_bytes(b"\x08half a protob")
        raise KeyboardInterrupt

    monkeypatch.setattr(ox, "_export_once", stopped_halfway)
    with pytest.raises(KeyboardInterrupt):
        ox.export_onnx(_UpsampleResidual().eval(), (3, 16, 16), target)
    assert given[0] != target and given[0].parent.parent == tmp_path
    assert target.read_bytes() == b"the previous export's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_model_written_with_one_file_per_weight_is_committed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TorchScript exporter writes a model over 2 GiB with one external file per weight,
    named after the tensors, beside the name it is given (the staging folder). The committed
    model.onnx must find all its weights in model.onnx.data, not in the deleted staging folder."""
    import onnx
    import onnxruntime as ort

    import distill_cli.export.onnx_export as ox

    real = ox._export_once

    def as_over_2gb(module, example, path, *rest):  # type: ignore[no-untyped-def]
        real(module, example, path, *rest)
        model = onnx.load(str(path))
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=False,
            size_threshold=0,
        )

    monkeypatch.setattr(ox, "_export_once", as_over_2gb)
    target = tmp_path / "model.onnx"
    module = _UpsampleResidual().eval()
    ox.export_onnx(module, (3, 16, 16), target, exporter="torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    x = torch.randn(2, 3, 16, 16)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), module(x).detach(), atol=1e-5, rtol=1e-5)


def test_an_export_removes_what_a_killed_export_left_half_written(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A SIGKILL mid-write leaves `.model.int8.onnx.<random>.tmp` (GBs for real models) or a
    staging folder; the next export into the folder removes those, and nothing of the user's."""
    out = tmp_path / "export"
    out.mkdir()
    (out / ".distill-export").write_text("written by distill\n")
    (out / ".model.int8.onnx.k3j9.tmp").write_bytes(b"half")
    (out / ".model.onnx.x7q2.tmp").mkdir()
    (out / ".model.onnx.x7q2.tmp" / "model.onnx").write_bytes(b"half")
    (out / ".notes.md.tmp").write_text("the user's")
    argv = ["export", "test_resnet", "--input-size", "32", "--num-classes", "3", "--out"]
    with pytest.raises(SystemExit) as info:
        entry([*argv, str(out), "--exporter", "torchscript", "--no-latency", "--images", "8"])
    assert info.value.code in (0, None), capfd.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        ".distill-export",
        ".notes.md.tmp",
        "model.onnx",
        "report.json",
    ]


def test_onnx_runtime_keeps_no_telemetry_store_in_the_users_cache(tmp_path: Path) -> None:
    """ONNX Runtime writes `Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}`
    into $XDG_CACHE_HOME at its first session; a process that imported distill does not."""
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper

    model = tmp_path / "identity.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [])
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), model)
    session = f"ort.InferenceSession({str(model)!r}, providers=['CPUExecutionProvider'])"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}

    def store_after(code: str, cache: Path) -> bool:
        subprocess.run(
            [sys.executable, "-c", code], env={**env, "XDG_CACHE_HOME": str(cache)}, check=True
        )
        return (cache / "Microsoft").exists()

    if not store_after(f"import onnxruntime as ort; {session}", tmp_path / "bare"):
        pytest.skip("this onnxruntime keeps no telemetry store")
    assert not store_after(f"import distill_cli; import onnxruntime as ort; {session}", tmp_path)


def test_a_second_export_into_a_folder_in_use_is_refused_and_touches_nothing(
    tmp_path: Path,
) -> None:
    """Two exports aimed at one --out: the second used to delete the first one's staged files
    as a killed export's leftovers. It is refused in one line while the first holds the folder
    (as a run holds its folder), and goes ahead once the first is done."""
    import fcntl

    from distill_cli import api
    from distill_cli.errors import DistillError

    out = tmp_path / "export"
    kw = {"input_size": 32, "num_classes": 4, "latency": False, "simplify": False}
    api.export("test_resnet", out=out, **kw)
    staged = out / ".model.onnx.abc123.tmp"  # the first export's file, mid-write
    staged.mkdir()
    (staged / "model.onnx").write_bytes(b"half")
    before = _tree(out)
    fd = os.open(out / ".distill-export", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first export holds it
        with pytest.raises(DistillError) as info:
            api.export("test_resnet", out=out, **kw)
        assert "in use by another export that is still running" in str(info.value)
        assert info.value.code == 2 and _tree(out) == before
    finally:
        os.close(fd)
    shutil.rmtree(staged)
    assert api.export("test_resnet", out=out, **kw).parity_passed
