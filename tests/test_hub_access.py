"""`pretrained: true` on a machine cut off from the Hub: weights already in the local cache load,
missing ones fail at once in one line that says why, instead of a minute of retry lines.

The Hub is made unreachable by pointing the probe at a closed local port (refused at once), so
nothing here touches the network; the cache is a temporary folder in huggingface_hub's layout.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from distill_cli.errors import DistillError
from distill_cli.models import hub_access
from distill_cli.models.create import create_net
from distill_cli.recipe.sections import ModelSpec


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The Hub unreachable, no proxy, an empty Hub cache; returns the cache folder."""
    for name in hub_access._PROXIES:
        monkeypatch.delenv(name, raising=False)
    port = _closed_port()
    monkeypatch.setattr(hub_access, "hub_host", lambda: ("127.0.0.1", port))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_missing_download_fails_at_once_in_one_line_naming_the_key(no_hub: Path) -> None:
    spec = ModelSpec(model="test_resnet", pretrained=True)
    started = time.perf_counter()
    with pytest.raises(DistillError) as caught:
        create_net(spec, 1000, role="teacher")
    assert time.perf_counter() - started < 10  # no retries with backoff
    line = str(caught.value)
    assert "\n" not in line
    assert "cannot be reached" in line and "127.0.0.1" in line and str(no_hub) in line
    assert caught.value.where == "teacher.pretrained"
    assert "teacher.checkpoint: PATH" in (caught.value.hint or "")
    assert constants.HF_HUB_OFFLINE is False  # the caller's setting is put back


def test_weights_in_the_local_cache_load_without_the_hub(no_hub: Path) -> None:
    import timm

    cfg = timm.models.get_pretrained_cfg("test_resnet")
    repo = no_hub / ("models--" + cfg.hf_hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    weights = timm.create_model("test_resnet").state_dict()
    weights = {k: v.clone().contiguous() for k, v in weights.items()}
    save_file(weights, str(snapshot / "model.safetensors"))
    net = create_net(ModelSpec(model="test_resnet", pretrained=True), 1000, role="teacher")
    loaded = net.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    assert constants.HF_HUB_OFFLINE is False


def test_the_probe_is_skipped_behind_a_proxy_and_when_offline_mode_is_set(
    no_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hub_access.hub_unreachable() is not None  # the closed port
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_access.hub_unreachable() is None  # only a request through the proxy can tell
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_access.hub_unreachable() == hub_access.OFFLINE_MODE == "HF_HUB_OFFLINE is set"
    with hub_access.hub_fetch(True) as reason:
        assert reason == hub_access.OFFLINE_MODE and constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is True  # the user's own setting is left as it was


def test_no_probe_without_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe() -> str:
        raise AssertionError("probed the Hub for a model built without pretrained weights")

    monkeypatch.setattr(hub_access, "hub_unreachable", probe)
    with hub_access.hub_fetch(False) as reason:
        assert reason is None


@pytest.mark.parametrize(
    ("name", "write"),
    [("hf-hub:timm/resnet18.a1_in1k", "resnet18.a1_in1k"), ("timm/test_vit.r160_in1k", "test_vit")],
)
def test_a_hub_id_names_the_timm_name_to_write_and_the_key(name: str, write: str) -> None:
    """Copied from the Hub's page: refused before any request, naming what to write."""
    with pytest.raises(DistillError) as caught:
        create_net(ModelSpec(model=name), 10, role="student")
    assert caught.value.where == "student.model" and "Hugging Face Hub id" in caught.value.what
    assert f"write '{write}" in (caught.value.hint or "")


def test_an_unknown_name_names_the_recipe_key() -> None:
    with pytest.raises(DistillError, match="unknown timm model 'resnet1'") as caught:
        create_net(ModelSpec(model="resnet1"), 10, role="teacher")
    assert caught.value.where == "teacher.model"
