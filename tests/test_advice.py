"""Every error's advice, followed literally, works.

Each case is a common mistake (a recipe key, a model name, a size, a path, a checkpoint, an
export or students option, a resume): the command fails with one line whose advice is checked
to be the text below, and the command with that advice applied as a user would copy it either
works (exit 0) or moves on to a different, correct error. The CLI runs in-process
(`cli.entry`), as the console script runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from distill_cli.cli.entry import entry
from distill_cli.models.create import create_net
from distill_cli.recipe.document import load_recipe
from tests.conftest import fm_body, teacher_body, write_recipe

#: flags that keep an export to a few seconds without changing what is checked
QUICK = ["--no-latency", "--no-simplify", "--images", "4", "--exporter", "torchscript"]
QUICK_OPSET = [*QUICK, "--opset", "17"]


@dataclass
class Case:
    argv: list[str]  # the mistake
    advice: str  # what the error line tells the user to do (a substring of it)
    fixed: list[str]  # the command with that advice applied
    then: str | None = None  # None: it works; else a regex of the next, different error


def dry(recipe: str, *sets: str) -> list[str]:
    """`distill run RECIPE --dry-run --set ...`: the recipe checked and planned, not trained."""
    return ["run", recipe, "--dry-run", *[a for key in sets for a in ("--set", key)]]


def export(*flags: str) -> list[str]:
    return ["export", *flags, *QUICK_OPSET]


#: a students sweep of one candidate, timed briefly
STUDENTS = ["students", "test_resnet", "--max-latency-ms", "1e6", "--input-size", "32"]
STUDENTS += ["--max-ratio", "1", "--runs", "2", "--min-time", "0", "--warmup", "0"]
RECIPE_FOR = ["--candidates", "test_efficientnet", "--write-recipe", "TMP/w.yaml"]

CASES: dict[str, Case] = {
    "key-typo": Case(
        dry("SUP", "optim.lrr=1e-3"), "did you mean 'lr'?", dry("SUP", "optim.lr=1e-3")
    ),
    "key-in-the-wrong-section": Case(
        dry("SUP", "epochs=2"), "did you mean 'schedule.epochs'?", dry("SUP", "schedule.epochs=2")
    ),
    "key-at-the-top-of-two-sections": Case(
        dry("FM", "input_size=40"),
        "did you mean 'teacher.input_size' or 'student.input_size'?",
        dry("FM", "student.input_size=40"),
    ),
    "method-param-typo": Case(
        dry("FM", "method.temprature=3"),
        "did you mean 'temperature'?",
        dry("FM", "method.temperature=3"),
    ),
    "method-name-typo": Case(
        dry("FM", "method.name=function-matching"),
        "did you mean 'function_matching'?",
        dry("FM", "method.name=function_matching"),
    ),
    "student-key-on-a-model-recipe": Case(  # the recipe names its student `model:` (the alias)
        dry("SUP", "student.model=resnet_18"),
        "close matches: resnet18",
        dry("SUP", "student.model=test_efficientnet"),
    ),
    "override-not-key-value": Case(
        dry("SUP", "optim.lr"), "e.g. --set optim.lr=3e-3", dry("SUP", "optim.lr=3e-3")
    ),
    "override-with-a-space": Case(
        dry("SUP", "schedule.epochs 1"),
        "write --set schedule.epochs=1",
        dry("SUP", "schedule.epochs=1"),
    ),
    "section-given-a-value": Case(
        dry("SUP", "schedule=1"), "schedule.epochs=1", dry("SUP", "schedule.epochs=1")
    ),
    "method-given-a-name": Case(
        dry("SUP", "method=supervised"),
        "method.name=supervised",
        dry("SUP", "method.name=supervised"),
    ),
    "list-without-brackets": Case(
        dry("SUP", "model.input_size=32,32"),
        "write [32,32]",
        dry("SUP", "model.input_size=[32,32]"),
    ),
    "number-for-text": Case(dry("SUP", "name=2024"), "write '2024'", dry("SUP", "name='2024'")),
    "steps-and-epochs-both-set": Case(
        dry("SUP", "schedule.steps=2", "schedule.epochs=2"),
        "--set schedule.epochs=null",
        dry("SUP", "schedule.steps=2", "schedule.epochs=2", "schedule.epochs=null"),
    ),
    "batch-larger-than-data": Case(
        dry("SUP", "schedule.batch_size=4096"),
        "set schedule.batch_size=128",
        dry("SUP", "schedule.batch_size=128"),
    ),
    "subset-too-large": Case(
        dry("SUP", "data.subset=100000"), "use at most 128", dry("SUP", "data.subset=128")
    ),
    "holdout-too-large": Case(
        dry("SUP", "data.holdout=1000"),
        "set data.holdout to at most 124",
        dry("SUP", "data.holdout=124"),
        then=r"batch size 32 is larger than the dataset \(4 images\).*batch_size=4",
    ),
    "cuda-on-a-cpu-machine": Case(
        dry("SUP", "runtime.device=cuda"),
        "set runtime.device=auto or cpu",
        dry("SUP", "runtime.device=auto"),
    ),
    "fashion-mnist-missing": Case(
        dry("SUP", "data.source=fashion_mnist", "data.root=TMP"),
        "or set data.root",
        dry("SUP", "data.source=synthetic"),
    ),
    "eskd-stop-after-the-run": Case(
        dry("FM", "method.name=eskd", "method.kd_stop_epoch=5"),
        "set schedule.epochs=6 (or more)",
        dry("FM", "method.name=eskd", "method.kd_stop_epoch=5", "schedule.epochs=6"),
    ),
    "run-folder-exists": Case(
        ["run", "SUP"], "or set output.name", ["run", "SUP", "--set", "output.name=sup-2"]
    ),
    "resume-and-overwrite": Case(
        ["run", "SUP", "--resume", "--overwrite"], "pass one", ["run", "SUP", "--resume"]
    ),
    "resume-changed-recipe": Case(
        ["run", "SUP", "--resume", "--set", "optim.lr=0.5"],
        "resume with the same recipe and --set values",
        ["run", "SUP", "--resume"],
    ),
    "checkpoint-key-on-a-plain-file": Case(
        dry("FM", "teacher.checkpoint=CKPT", "teacher.checkpoint_key=ema"),
        "drop checkpoint_key",
        dry("FM", "teacher.checkpoint=CKPT"),
    ),
    "checkpoint-key-wrong-entry": Case(
        dry("FM", "teacher.checkpoint=NESTED", "teacher.checkpoint_key=ema"),
        "to one of those",
        dry("FM", "teacher.checkpoint=NESTED", "teacher.checkpoint_key=state_dict_ema"),
    ),
    "export-variant-gate-without-variant": Case(
        export("RUN", "--min-variant-agreement", "50"),
        "add --quantize int8 or --precision fp16",
        export("RUN", "--min-variant-agreement", "50", "--precision", "fp16"),
    ),
    "export-latency-variant-not-made": Case(
        export("RUN", "--latency-variant", "fp16", "--max-latency-ms", "1e6"),
        "add --precision fp16",
        export(
            "RUN", "--latency-variant", "fp16", "--max-latency-ms", "1e6", "--precision", "fp16"
        ),
        then="needs the latency measurement.*drop --no-latency",  # QUICK's --no-latency
    ),
    "export-dynamo-old-opset": Case(
        ["export", "RUN", *QUICK[:4], "--opset", "17"],
        "pass --exporter torchscript for opset 17",
        ["export", "RUN", *QUICK[:4], "--opset", "17", "--exporter", "torchscript"],
    ),
    "export-checkpoint-key-alone": Case(
        export("test_resnet", "--checkpoint-key", "state_dict_ema", "--out", "TMP/e1"),
        "give --checkpoint FILE too, or drop it",
        export(
            "test_resnet",
            "--checkpoint-key",
            "state_dict_ema",
            "--out",
            "TMP/e1",
            "--checkpoint",
            "NESTED",
        ),
    ),
    "export-run-with-checkpoint": Case(
        export("RUN", "--checkpoint", "CKPT"), "drop --checkpoint", export("RUN")
    ),
    "export-checkpoint-with-checkpoint": Case(
        export("CKPT", "--checkpoint", "CKPT", "--out", "TMP/e2"),
        "drop --checkpoint",
        export("CKPT", "--out", "TMP/e2"),
    ),
    "export-latency-gate-without-latency": Case(
        export("RUN", "--max-latency-ms", "1e6"),
        "drop --no-latency",
        [
            *[f for f in export("RUN", "--max-latency-ms", "1e6") if f != "--no-latency"],
            *["--runs", "2", "--min-time", "0", "--warmup", "0"],
        ],
    ),
    "export-protocol-without-gate": Case(
        export("RUN", "--require-protocol"), "or drop --require-protocol", export("RUN")
    ),
    "export-asymmetric-per-channel": Case(
        export("RUN", "--quantize", "int8", "--weight-asymmetric"),
        "add --per-tensor",
        export("RUN", "--quantize", "int8", "--weight-asymmetric", "--per-tensor"),
    ),
    "export-into-a-user-folder": Case(
        export("RUN", "--out", "TMP"),
        "choose a new or empty folder",
        export("RUN", "--out", "TMP/new-export"),
    ),
    "export-source-missing": Case(
        export("TMP/runs/nope"), "a run directory, checkpoint or timm name", export("RUN")
    ),
    "compare-plot-not-png": Case(
        ["compare", "RUN", "RUN2", "--plot", "TMP/curves.jpg"],
        "name a .png file",
        ["compare", "RUN", "RUN2", "--plot", "TMP/curves.png"],
    ),
    "compare-one-run": Case(["compare", "RUN"], "pass two run folders", ["compare", "RUN", "RUN2"]),
    "students-candidate-typo": Case(
        [*STUDENTS, "--candidates", "test_efficientnt"],
        "did you mean 'test_efficientnet'",
        [*STUDENTS, "--candidates", "test_efficientnet"],
    ),
    "students-recipe-without-data": Case(
        [*STUDENTS, *RECIPE_FOR],
        "synthetic, fashion_mnist or an image folder",
        [*STUDENTS, *RECIPE_FOR, "--data", "synthetic"],
    ),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A supervised recipe whose student is written `model:` (the alias) with a finished run,
    a second run, a distillation recipe, a plain checkpoint and one nested under an entry."""
    import torch

    from distill_cli import api

    folder = tmp_path_factory.mktemp("advice")
    sup = write_recipe(folder, "sup", teacher_body(folder / "runs", epochs=1))
    run = api.train(sup).run_dir
    run2 = api.train(sup, name="sup-b").run_dir
    fm = write_recipe(folder, "fm", fm_body(folder / "runs", None, epochs=1))
    ckpt = run / "checkpoints" / "best.safetensors"
    net = create_net(load_recipe(sup).student, 4)
    nested = folder / "nested.pt"  # a training script's checkpoint: weights under an entry
    torch.save({"state_dict_ema": net.module.state_dict(), "epoch": 1}, nested)
    return {
        "SUP": str(sup),
        "FM": str(fm),
        "RUN": str(run),
        "RUN2": str(run2),
        "CKPT": str(ckpt),
        "NESTED": str(nested),
        "TMP": str(folder),
    }


def _run(
    argv: list[str], world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """The command's exit code and its last `error:` line (empty when none)."""
    args = [
        re.sub(r"\b(SUP|FM|RUN2|RUN|CKPT|NESTED|TMP)\b", lambda m: world[m.group(1)], a)
        for a in argv
    ]
    try:
        entry(args)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    errors = [
        line for line in (captured.err + captured.out).splitlines() if line.startswith("error:")
    ]
    return code, errors[-1] if errors else ""


@pytest.mark.parametrize("name", list(CASES))
def test_the_advice_followed_works(
    world: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.chdir(world["TMP"])  # what a command writes by default (compare.png) lands there
    case = CASES[name]
    code, line = _run(case.argv, world, capsys)
    assert code == 2 and case.advice in line, line
    code, after = _run(case.fixed, world, capsys)
    if case.then is None:
        assert code == 0, after
    else:
        assert code != 0 and after != line and re.search(case.then, after), after
