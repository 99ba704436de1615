"""A battery of bad inputs across every command (issue 12, item 10).

Each row is something a user really does: a typo, a path with spaces or accents, a FIFO or a
device where a file belongs, a truncated or foreign file, a wrong architecture, an empty folder,
a nonsensical number. Every one must end with its exit code, exactly one `error:` line, no
traceback, and no file changed anywhere around it (the whole workspace is hashed before and
after: a refused run must not even leave an empty folder behind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from distill_cli import api
from distill_cli.cli.entry import entry
from tests.conftest import fm_body, teacher_body, write_recipe


class Payload:
    """An object in a pickle: `torch.load(weights_only=True)` must refuse it, not run it."""


W = "{w}"  # the workspace, filled in per case
FM, SUP, DONE = f"{W}/fm.yaml", f"{W}/sup.yaml", f"{W}/runs/done"

#: (id, argv, exit code, a phrase the error line must contain)
CASES: list[tuple[str, list[str], int, str]] = [
    # usage: commands and options as typed
    ("unknown-command", ["runn", FM], 2, "No such command"),
    ("unknown-option", ["run", FM, "--bogus"], 2, "No such option"),
    ("missing-argument", ["run"], 2, "Missing argument"),
    ("nproc-zero", ["run", FM, "--nproc", "0"], 2, "--nproc"),
    ("nproc-not-a-number", ["run", FM, "--nproc", "two"], 2, "--nproc"),
    ("unknown-subcommand", ["recipes", "shw"], 2, "No such command"),
    ("unknown-shipped-recipe", ["recipes", "show", "no/such"], 2, "no shipped recipe"),
    ("models-negative-limit", ["models", "--limit", "-1"], 2, "--limit"),
    ("models-negative-ratio", ["models", "--max-ratio", "-0.5"], 2, "--max-ratio"),
    ("models-nan-ratio", ["models", "--max-ratio", "nan"], 2, "--max-ratio"),
    ("models-unknown-teacher", ["models", "--teacher", "resnet_18"], 2, "resnet18"),
    # the recipe file
    ("recipe-missing-with-space", ["run", f"{W}/no such recipe.yaml"], 2, "not found"),
    ("recipe-missing-unicode", ["train", f"{W}/récipé ü.yaml"], 2, "not found"),
    ("recipe-is-dev-null", ["run", "/dev/null"], 2, "not a regular file"),
    ("recipe-is-a-fifo", ["run", f"{W}/fifo"], 2, "not a regular file"),
    ("recipe-is-a-folder", ["run", f"{W}/empty dir"], 2, "the recipe is a folder"),
    ("recipe-binary", ["run", f"{W}/binary.yaml"], 2, "not UTF-8"),
    ("recipe-truncated", ["run", f"{W}/truncated.yaml"], 2, "YAML"),
    ("recipe-a-list", ["run", f"{W}/list.yaml"], 2, "mapping"),
    ("recipe-empty", ["train", f"{W}/empty.yaml"], 2, "the recipe is empty"),
    ("recipe-unknown-key", ["run", f"{W}/typo.yaml"], 2, "did you mean 'batch_size'"),
    ("train-with-a-teacher-method", ["train", FM], 2, "needs a teacher"),
    # --set
    ("set-without-equals", ["run", FM, "--set", "optim.lr"], 2, "KEY=VALUE"),
    ("set-wrong-type", ["run", FM, "--set", "optim.lr=fast"], 2, "optim.lr"),
    ("set-lr-overflows", ["run", FM, "--set", "optim.lr=1e400"], 2, "optim.lr"),
    ("set-lr-negative", ["run", FM, "--set", "optim.lr=-1"], 2, "optim.lr"),
    ("set-unparsable-yaml", ["run", FM, "--set", "optim.lr=[1"], 2, "unparsable"),
    ("set-unknown-source", ["run", FM, "--set", "data.source=imagenet"], 2, "data.source"),
    ("set-unknown-model", ["run", FM, "--set", "student.model=resnet_18"], 2, "resnet18"),
    ("set-zero-input", ["run", FM, "--set", "student.input_size=0"], 2, "input_size"),
    ("set-zero-epochs", ["run", FM, "--set", "schedule.epochs=0"], 2, "schedule.epochs"),
    ("set-epochs-true", ["run", FM, "--set", "schedule.epochs=true"], 2, "schedule.epochs: true"),
    ("set-lr-yes", ["run", FM, "--set", "optim.lr=yes"], 2, "optim.lr: true/false"),
    ("set-sync-bn-not-bool", ["run", FM, "--set", "runtime.sync_bn=maybe"], 2, "sync_bn"),
    ("run-name-dotdot", ["run", FM, "--set", "output.name=.."], 2, "plain folder name"),
    ("run-name-dot", ["train", SUP, "--overwrite", "--set", "output.name=."], 2, "plain"),
    ("run-name-absolute", ["run", FM, "--set", f"output.name={W}/x"], 2, "plain folder name"),
    ("run-name-separator", ["run", FM, "--set", "output.name=a/b"], 2, "plain folder name"),
    ("recipe-name-dotdot", ["train", SUP, "--set", "name=.."], 2, "plain folder name"),
    ("resume-and-overwrite", ["run", FM, "--resume", "--overwrite"], 2, "contradict"),
    (
        "eskd-stops-after-the-end",
        ["run", FM, "--set", "method.name=eskd", "--set", "method.kd_stop_epoch=5"],
        2,
        "kd_stop_epoch",
    ),
    ("class-map-unknown-class", ["run", FM, "--set", "data.class_map.cat=dog"], 2, "class_map"),
    ("output-dir-is-a-file", ["run", FM, "--set", f"output.dir={W}/a file"], 2, "run folder"),
    (
        "foreign-folder-overwrite",
        ["train", SUP, "--overwrite", "--set", "output.name=photos"],
        2,
        "not a distill run",
    ),
    (
        "resume-without-last",
        ["train", SUP, "--resume", "--set", "output.name=nolast"],
        2,
        "last.safetensors is missing",
    ),
    ("existing-run-no-flag", ["train", SUP, "--set", "output.name=done"], 2, "already holds a run"),
    (
        "empty-image-folder",
        ["run", FM, "--set", "data.source=image_folder", "--set", f"data.root={W}/empty dir"],
        2,
        "data folder not found",
    ),
    (
        "image-root-unicode-missing",
        ["run", FM, "--set", "data.source=image_folder", "--set", f"data.root={W}/dossier é/nope"],
        2,
        "not found",
    ),
    (
        "teacher-run-not-trained-yet",  # a shipped recipe before its teacher run: name the run
        ["run", FM, "--set", f"teacher.checkpoint={W}/runs/tchr/checkpoints/best.safetensors"],
        2,
        "the run 'tchr' has not written it",
    ),
    (
        "teacher-truncated",
        ["run", FM, "--set", f"teacher.checkpoint={W}/trunc.safetensors"],
        2,
        "cannot read checkpoint",
    ),
    (
        "teacher-wrong-architecture",
        [
            "run",
            FM,
            "--set",
            "teacher.model=test_efficientnet",
            "--set",
            f"teacher.checkpoint={DONE}/checkpoints/best.safetensors",
        ],
        2,
        "side file says it holds",
    ),
    (
        "teacher-unexpected-keys",  # a bigger neighbour's weights: refused, not half-loaded
        ["run", FM, "--set", f"teacher.checkpoint={W}/extra.safetensors"],
        2,
        "1 unexpected (extra.weight)",
    ),
    (
        "teacher-class-names-file-empty",
        ["run", FM, "--set", f"teacher.class_names={W}/empty.yaml"],
        2,
        "class names file",
    ),
    (
        "teacher-pickle-with-objects",
        ["run", FM, "--set", f"teacher.checkpoint={W}/evil.pt"],
        2,
        "save model.state_dict()",
    ),
    (
        "teacher-is-dev-null",
        ["run", FM, "--set", "teacher.checkpoint=/dev/null"],
        2,
        "not a regular file",
    ),
    (
        "teacher-is-a-fifo",
        ["run", FM, "--set", f"teacher.checkpoint={W}/fifo"],
        2,
        "not a regular file",
    ),
    (
        "dry-run-too-small-for-the-model",
        [
            "run",
            FM,
            "--dry-run",
            "--set",
            "student.model=test_vit",
            "--set",
            "student.input_size=8",
        ],
        2,
        "test_vit",
    ),
    # export
    ("export-missing-run-with-space", ["export", f"{W}/no such run/"], 2, "not found"),
    (
        "export-checkpoint-not-written-yet",
        ["export", f"{W}/runs/tchr/checkpoints/best.safetensors"],
        2,
        "train that run first",
    ),
    ("export-empty-folder", ["export", f"{W}/dossier é"], 2, "not a run directory"),
    ("export-input-size-zero", ["export", "test_resnet", "--input-size", "0"], 2, "--input-size"),
    ("export-opset-dynamo-13", ["export", "test_resnet", "--opset", "13"], 2, "opset"),
    ("export-opset-99", ["export", "test_resnet", "--opset", "99"], 2, "opset"),
    ("export-tolerance-nan", ["export", "test_resnet", "--tolerance", "nan"], 2, "--tolerance"),
    ("export-images-negative", ["export", "test_resnet", "--images", "-1"], 2, "--images"),
    ("export-min-top1-over-100", ["export", "test_resnet", "--min-top1", "150"], 2, "--min-top1"),
    ("export-unknown-model", ["export", "resnet_18"], 2, "resnet18"),
    ("export-truncated-checkpoint", ["export", f"{W}/trunc.safetensors"], 2, "checkpoint"),
    (
        "export-run-with-checkpoint",
        ["export", DONE, "--checkpoint", f"{W}/evil.pt"],
        2,
        "--checkpoint",
    ),
    # bench
    ("bench-missing-onnx", ["bench", "latency", f"{W}/missing model.onnx"], 2, "not found"),
    ("bench-garbage-onnx", ["bench", "latency", f"{W}/garbage.onnx"], 2, "ONNX"),
    ("bench-zero-runs", ["bench", "latency", "test_resnet", "--runs", "0"], 2, "--runs"),
    ("bench-zero-batch", ["bench", "latency", "test_resnet", "--batch", "0"], 2, "--batch"),
    (
        "bench-negative-threads",
        ["bench", "latency", "test_resnet", "--threads", "-2"],
        2,
        "--threads",
    ),
    ("bench-inf-time", ["bench", "latency", "test_resnet", "--max-time", "inf"], 2, "finite"),
    ("bench-opset-dynamo-9", ["bench", "latency", "test_resnet", "--opset", "9"], 2, "opset"),
    ("bench-train-zero-steps", ["bench", "train", FM, "--steps", "0"], 2, "--steps"),
    ("bench-train-binary-recipe", ["bench", "train", f"{W}/binary.yaml"], 2, "not UTF-8"),
    # report and compare
    ("report-empty-folder", ["report", f"{W}/empty dir"], 2, "not a run folder"),
    ("report-missing-unicode", ["report", f"{W}/dossier é/none"], 2, "no such run folder"),
    ("report-dev-null", ["report", "/dev/null"], 2, "run folder"),
    ("report-recipe-not-utf8", ["report", f"{W}/runs/garbled"], 2, "not UTF-8"),
    ("recipes-show-not-utf8", ["recipes", "show", "team/latin1"], 2, "not UTF-8"),
    ("compare-one-run", ["compare", DONE], 2, "two runs"),
    ("compare-missing-runs", ["compare", f"{W}/a b", f"{W}/ç d"], 2, "run"),
    ("compare-no-runs", ["compare"], 2, "Missing argument"),
    # issue 22, class 1: knobs that cost resources are bounded by the machine, with the reason
    ("threads-beyond-the-cores", ["run", FM, "--set", "runtime.threads=100000"], 2, "cores"),
    ("workers-beyond-the-cores", ["train", SUP, "--set", "data.workers=100000"], 2, "cores"),
    ("input-side-too-large", ["run", FM, "--set", "student.input_size=100000"], 2, "4096"),
    ("input-pair-too-large", ["run", FM, "--set", "teacher.input_size=[32, 50000]"], 2, "4096"),
    ("load-size-too-large", ["train", SUP, "--set", "data.load_size=99999"], 2, "4096"),
    ("synthetic-side-large", ["train", SUP, "--set", "data.synthetic.image_size=8192"], 2, "4096"),
    (
        "synthetic-bytes-too-large",
        ["train", SUP, "--set", "data.synthetic.train_size=100000000"],
        2,
        "GiB",
    ),
    ("lr-beyond-float32", ["train", SUP, "--set", "optim.lr=1e39"], 2, "float32"),
    ("weight-decay-beyond-float32", ["run", FM, "--set", "optim.weight_decay=5e38"], 2, "float32"),
    ("betas-beyond-float32", ["run", FM, "--set", "optim.betas=[0.9, 1e39]"], 2, "float32"),
    ("temperature-beyond-float32", ["run", FM, "--set", "method.temperature=1e39"], 2, "float32"),
    ("mixup-alpha-beyond-float32", ["train", SUP, "--set", "method.mixup_alpha=4e38"], 2, "float"),
    ("mean-beyond-float32", ["train", SUP, "--set", "model.mean=[1e39]"], 2, "float32"),
    ("export-input-size-huge", ["export", "test_resnet", "--input-size", "100000"], 2, "4096"),
    ("export-threads-huge", ["export", "test_resnet", "--threads", "100000"], 2, "--threads"),
    (
        "bench-input-size-huge",
        ["bench", "latency", "test_resnet", "--input-size", "65536"],
        2,
        "--input-size",
    ),
    ("bench-threads-huge", ["bench", "latency", "test_resnet", "--threads", "9999"], 2, "cores"),
    (
        "students-input-size-huge",
        ["students", "test_resnet", "--max-latency-ms", "5", "--input-size", "100000"],
        2,
        "4096",
    ),
    (
        "students-threads-huge",
        ["students", "test_resnet", "--max-latency-ms", "5", "--threads", "100000"],
        2,
        "--threads",
    ),
    # class 2: distill writes only into its own folders and files, never through a link
    ("export-out-user-folder", ["export", DONE, "--out", f"{W}/mine"], 2, "--force"),
    ("export-out-symlink", ["export", DONE, "--out", f"{W}/link to mine"], 2, "symlink"),
    ("export-out-is-a-file", ["export", DONE, "--out", f"{W}/a file"], 2, "not a folder"),
    (
        "students-recipe-exists",
        [
            *["students", "test_resnet", "--max-latency-ms", "5", "--candidates", "test_resnet"],
            *["--write-recipe", FM, "--data", "synthetic"],
        ],
        2,
        "--force",
    ),
    ("compare-plot-not-png", ["compare", DONE, f"{W}/runs/nolast", "--plot", "x.yaml"], 2, "png"),
    (
        "compare-plot-user-png",
        ["compare", DONE, f"{W}/runs/nolast", "--plot", f"{W}/mine/photo.png"],
        2,
        "--no-plot",
    ),
    ("report-through-symlink", ["report", f"{W}/runs/linked"], 2, "symlink"),
    ("report-lookalike", ["report", f"{W}/runs/lookalike"], 2, "not a distill run"),
    (
        "overwrite-lookalike",
        ["train", SUP, "--overwrite", "--set", "output.name=lookalike"],
        2,
        "not a distill run",
    ),
    ("resume-lookalike", ["train", SUP, "--resume", "--set", "output.name=lookalike"], 2, "not a"),
    ("run-folder-is-a-symlink", ["train", SUP, "--set", "output.name=alias"], 2, "symlink"),
    # class 3: damaged or hand-made input is one line, never a traceback
    ("recipe-nested-3000-deep", ["run", f"{W}/deep.yaml"], 2, "64 levels"),
    ("set-nested-3000-deep", ["run", FM, "--set", "x=" + "[" * 3000 + "]" * 3000], 2, "64 levels"),
    ("set-key-200-deep", ["run", FM, "--set", "a." * 200 + "b=1"], 2, "64 levels"),
    ("model-arg-not-a-number", ["export", "test_resnet", "--model-arg", "drop_rate=abc"], 2, "arg"),
    ("model-arg-unknown", ["export", "test_resnet", "--model-arg", "bogus_key=1"], 2, "arg"),
    ("sidecar-a-list", ["export", f"{W}/listside.safetensors"], 2, "sidecar"),
    (
        "teacher-sidecar-a-list",
        ["run", FM, "--set", f"teacher.checkpoint={W}/listside.safetensors"],
        2,
        "sidecar",
    ),
    # class 4: what was silently accepted or clamped, and errors that blamed the wrong cause
    ("subset-larger-than-data", ["train", SUP, "--set", "data.subset=100000"], 2, "data.subset"),
    ("evals-more-than-epochs", ["train", SUP, "--set", "schedule.evals=5"], 2, "evals"),
    ("save-epoch-past-the-end", ["train", SUP, "--set", "schedule.save_epochs=[3]"], 2, "save_"),
    (
        "save-epoch-past-the-steps",
        ["train", SUP, "--set", "schedule={steps: 2, batch_size: 32, save_epochs: [9]}"],
        2,
        "save_epochs",
    ),
    ("bench-bare-missing", ["bench", "train", FM, "--bare", f"{W}/no bare.py"], 2, "not found"),
    (
        "latency-variant-unknown",
        ["export", "test_resnet", "--latency-variant", "int4"],
        2,
        "--latency-variant",
    ),
    ("diverges-before-step-one", ["train", f"{W}/boom.yaml"], 1, "NaN/Inf"),
    # the audit: what users really hand over
    (
        "seed-beyond-generators",
        ["run", FM, "--set", "runtime.seed=99999999999999999999"],
        2,
        "seed",
    ),
    ("teacher-empty-ensemble", ["run", FM, "--set", "teacher=[]"], 2, "at least 1 item"),
    (
        "teacher-is-a-recipe-not-weights",
        ["run", FM, "--set", f"teacher.checkpoint={W}/sup.yaml"],
        2,
        "not a checkpoint",
    ),
    (
        "teacher-weights-hold-nan",
        ["run", FM, "--set", f"teacher.checkpoint={W}/diverged.safetensors"],
        2,
        "'fc.weight' holds NaN/Inf",
    ),
    (
        "image-folder-empty-class",
        ["train", SUP, "--set", f"data={{source: image_folder, root: {W}/photos empty class}}"],
        2,
        "hold no images: ['bird']",
    ),
    (
        "image-folder-one-class",
        ["train", SUP, "--set", f"data={{source: image_folder, root: {W}/photos one class}}"],
        2,
        "two or more",
    ),
    (
        "photos-heic-beside-jpegs",
        ["train", SUP, "--set", f"data={{source: image_folder, root: {W}/photos heic}}"],
        2,
        "cannot decode (.heic)",
    ),
]


def _digest(root: Path) -> dict[str, str]:
    """Every entry under `root`: content hash for files, kind for the rest (FIFOs never read)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        key = str(path.relative_to(root))
        if stat.S_ISREG(mode):
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest() + oct(stat.S_IMODE(mode))
        else:
            out[key] = "dir" if stat.S_ISDIR(mode) else "fifo" if stat.S_ISFIFO(mode) else "other"
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("bad inputs ü")  # a space and an accent in every path
    runs = w / "runs"
    fm = fm_body(runs, None, epochs=1)
    write_recipe(w, "fm", fm)
    sup = teacher_body(runs, epochs=1)
    sup["data"]["synthetic"]["train_size"] = 64
    sup_path = write_recipe(w, "sup", sup)
    api.run(sup_path, output__name="done")
    api.run(sup_path, output__name="nolast")
    (runs / "nolast" / "checkpoints" / "last.safetensors").unlink()
    shutil.copytree(runs / "done", runs / "garbled")  # saved by an editor in Latin-1
    (runs / "garbled" / "recipe.yaml").write_bytes(b"name: caf\xe9\n")
    (w / "recipes" / "team").mkdir(parents=True)  # a team's own recipes beside the shipped
    (w / "recipes" / "team" / "latin1.yaml").write_bytes(b"description: caf\xe9\n")
    (runs / "photos").mkdir()
    (runs / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    (w / "empty dir").mkdir()
    (w / "dossier é").mkdir()
    os.mkfifo(w / "fifo")
    (w / "a file").write_text("not a folder")
    (w / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01")
    (w / "truncated.yaml").write_text("name: t\nmodel: {model: test_resnet, input_size: [32")
    (w / "list.yaml").write_text("- name: t\n- model: test_resnet\n")
    (w / "empty.yaml").write_text("")
    typo = dict(sup, schedule={"epochs": 1, "batch_sise": 32})
    write_recipe(w, "typo", typo)
    best = runs / "done" / "checkpoints" / "best.safetensors"
    data = best.read_bytes()
    (w / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    shutil.copy(best.with_suffix(".json"), w / "trunc.json")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Payload()}, w / "evil.pt")
    extra = {**load_file(str(best)), "extra.weight": torch.zeros(2)}
    save_file(extra, str(w / "extra.safetensors"))
    (w / "garbage.onnx").write_bytes(b"this is not a protobuf")
    # issue 22: a user's folders and files beside the runs, links, and look-alike layouts
    depth = 3000
    (w / "deep.yaml").write_text("name: deep\nx: " + "[" * depth + "]" * depth + "\n")
    (w / "mine").mkdir()
    (w / "mine" / "model.onnx").write_bytes(b"my own model")
    (w / "mine" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n my photo")
    (w / "link to mine").symlink_to(w / "mine")
    (runs / "alias").symlink_to(w / "mine")
    look = runs / "lookalike"  # what many ML projects hold: a recipe and checkpoints
    (look / "checkpoints").mkdir(parents=True)
    (look / "recipe.yaml").write_text((runs / "done" / "recipe.yaml").read_text())
    (look / "checkpoints" / "epoch3.pt").write_bytes(b"my weights")
    (look / "notes.md").write_text("my notes")
    shutil.copytree(runs / "done", runs / "linked")
    (w / "victim.html").write_text("<p>mine</p>")
    (runs / "linked" / "report.html").symlink_to(w / "victim.html")
    diverged = load_file(str(best))
    diverged["fc.weight"][0, 0] = float("nan")
    save_file(diverged, str(w / "diverged.safetensors"))
    from PIL import Image

    for folder, classes in (("photos empty class", ("cat", "dog")), ("photos one class", ("cat",))):
        for split in ("train", "val"):
            for name in classes:
                (w / folder / split / name).mkdir(parents=True)
                for i in range(4):
                    Image.new("RGB", (16, 16), (40 * i, 80, 0)).save(
                        w / folder / split / name / f"{i}.jpg"
                    )
    (w / "photos empty class" / "train" / "bird").mkdir()
    shutil.copytree(w / "photos one class", w / "photos heic")  # iPhone photos beside JPEGs
    (w / "photos heic" / "train" / "cat" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    shutil.copy(best, w / "listside.safetensors")
    (w / "listside.json").write_text("[1, 2, 3]\n")
    # SGD at the highest lr allowed (100), unclipped: NaN at step 9, before the first metrics
    # line (log_every) and checkpoint (16 steps an epoch), so the run leaves nothing behind
    boom = dict(
        sup,
        optim={"name": "sgd", "lr": 100, "clip_grad_norm": None},
        schedule={"epochs": 1, "batch_size": 4, "log_every": 50},
        output={"dir": str(w / "new")},
    )
    write_recipe(w, "boom", boom)
    return w


def test_bad_inputs_table_is_big_and_distinct() -> None:
    assert len(CASES) >= 120  # 80 before issue 22, which added 40 or more
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({tuple(c[1]) for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES if c[1]}
    assert {"run", "train", "export", "bench", "report", "compare", "models", "recipes"} <= commands
    assert any("--set" in c[1] for c in CASES)


#: Errors of distill_cli/recipe/ (recipe files and --set, reworked in parallel) that do not yet
#: end with what to do; every other error line is `error: <what> (<where>) - <what to do>`.
RECIPE_PARSING_WITHOUT_HINT: set[str] = set()


@pytest.mark.parametrize(
    ("argv", "code", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    workspace: Path,
    argv: list[str],
    code: int,
    needle: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.chdir(workspace)  # relative defaults (compare.png) land inside the hashed tree
    monkeypatch.delenv("DISTILL_DEBUG", raising=False)
    args = [a.replace(W, str(workspace)) for a in argv]
    before = _digest(workspace)
    with pytest.raises(SystemExit) as exit_info:
        entry(args)
    out, err = capfd.readouterr()
    assert exit_info.value.code == code, err
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out + err
    assert err.rstrip().splitlines()[-1].startswith("error:"), err
    assert "Traceback" not in out + err and "weights_only" not in out + err, out + err
    assert needle in errors[0], errors[0]
    if request.node.callspec.id not in RECIPE_PARSING_WITHOUT_HINT:  # README's form, all of it
        assert " - " in errors[0], f"the line does not say what to do: {errors[0]}"
    assert _digest(workspace) == before, "a refused command changed files"


# --- issue 22: damaged files a command can go on without are notes; exit codes by cause ----

#: (file in the run folder, damaged content): hand edits and broken writes of each typed file
DAMAGE: dict[str, tuple[str, bytes]] = {
    "summary-a-list": ("summary.json", b"[1, 2, 3]\n"),
    "summary-wrong-types": (
        "summary.json",
        b'{"name": "x", "run_dir": "x", "method": "supervised", "student": {"model": "m", '
        b'"params": "many", "top1": "abc"}, "teacher": null, "epochs": "one", "steps": 1, '
        b'"wall_time_s": 1.0, "device": "cpu", "precision": "fp32"}\n',
    ),
    "metrics-wrong-types": (
        "metrics.jsonl",
        b'{"kind": "eval", "step": "x", "epoch": "one", "top1": "abc"}\n[1, 2]\n'
        b'{"kind": "train", "step": 3, "epoch": 1, "loss": "high"}\n',
    ),
    "export-report-wrong-types": (
        "export/report.json",
        b'{"teachers": "none", "latency": {"entries": [{"name": 5, "p50_ms": [1]}]}}\n',
    ),
    "export-report-a-list": ("export/report.json", b"[]\n"),
    "export-report-deep": ("export/report.json", b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_run_files_are_notes_in_report_and_compare(
    workspace: Path,
    tmp_path: Path,
    damage: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISTILL_DEBUG", raising=False)
    run = tmp_path / "damaged"
    shutil.copytree(workspace / "runs" / "done", run)
    name, content = DAMAGE[damage]
    (run / name).parent.mkdir(exist_ok=True)
    (run / name).write_bytes(content)
    for argv in (["report", str(run)], ["compare", str(run), str(workspace / "runs" / "done")]):
        with pytest.raises(SystemExit) as exit_info:
            entry(argv)
        out, err = capfd.readouterr()
        assert exit_info.value.code == 0, out + err
        assert "Traceback" not in out + err and "error:" not in out + err, out + err
    with pytest.raises(SystemExit):
        entry(["report", str(run)])
    out, _ = capfd.readouterr()
    assert "note:" in out and Path(name).name in out, out


def test_a_summary_that_is_a_list_is_one_line_naming_the_file(
    workspace: Path, tmp_path: Path
) -> None:
    from distill_cli.errors import DistillError
    from distill_cli.rundir.summary import RunSummary

    run = tmp_path / "r"
    shutil.copytree(workspace / "runs" / "done", run)
    (run / "summary.json").write_text('{"name": 1}\n')
    with pytest.raises(DistillError, match=r"summary\.json") as info:
        RunSummary.load(run)
    assert "\n" not in str(info.value)


def test_cached_timings_that_are_damaged_or_not_finite_are_measured_again(tmp_path: Path) -> None:
    import json

    from distill_cli.students.cache import Cache
    from distill_cli.students.types import StudentQuery, Timing

    query = StudentQuery(teacher="test_resnet", max_latency_ms=5.0)
    cache = Cache(tmp_path, {"versions": {}})
    cache.save_timing(Timing(name="test_resnet", ok=True, p50_ms=1.5, p90_ms=2.0), query)
    assert cache.timing("test_resnet", query) is not None
    (path,) = (tmp_path / "students" / "timings").glob("*.json")
    good = json.loads(path.read_text())
    for field, value in (("p50_ms", float("nan")), ("p90_ms", "fast"), ("ok", "yes"), ("runs", [])):
        bad = json.loads(json.dumps(good))
        bad["value"][field] = value
        path.write_text(json.dumps(bad))
        assert cache.timing("test_resnet", query) is None, field
    path.write_text("[]")
    assert cache.timing("test_resnet", query) is None


@pytest.mark.parametrize("wrapped", [False, True], ids=["oserror", "wrapped-by-the-exporter"])
def test_a_full_disk_during_export_is_exit_1_naming_the_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    wrapped: bool,
) -> None:
    import errno

    from distill_cli.export import onnx_export as ox

    def full(*_: object) -> None:
        disk = OSError(errno.ENOSPC, "No space left on device")
        if not wrapped:
            raise disk
        raise RuntimeError("export failed") from disk

    monkeypatch.setattr(ox, "_export_once", full)
    monkeypatch.delenv("DISTILL_DEBUG", raising=False)
    out_dir = tmp_path / "out"
    argv = ["export", "test_resnet", "--input-size", "32", "--no-latency", "--out", str(out_dir)]
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    _, err = capfd.readouterr()
    assert exit_info.value.code == 1, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:") and "model.onnx" in line and "disk space" in line, line
    assert "architecture" not in line and "README" not in line, line
