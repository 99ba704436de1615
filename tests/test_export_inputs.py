"""`distill export` driven as deployers and CI pipelines drive it: re-exports into the same
folder, gates written the ways CI writes them. One tiny trained run shared by the module."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_cli import api
from tests.conftest import fm_body, write_recipe


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
    first = api.export(run, out=out, quantize="int8", calib_images=16, latency=False)
    assert (out / "model.int8.onnx").is_file() and "int8" in first.variants
    second = api.export(run, out=out, latency=False)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "model.onnx",
        "report.json",
    ]
    assert second.variants == {}
    assert any("removed model.int8.onnx" in n for n in second.to_dict()["source"]["notes"])
