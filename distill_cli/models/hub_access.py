"""Fetching pretrained weights (`pretrained: true`) on a machine that cannot reach the Hub.

Training clusters are often cut off from the internet. There, timm's download went through
huggingface_hub's retries (five per file, two files, with backoff): about a minute of
`Retrying in 8s` lines on stderr before the error, for weights that were never going to come.
`hub_fetch` probes the Hub's host first (one TCP connection, a few milliseconds when there is
no route; a bounded wait otherwise). When it cannot be reached, the fetch runs in
huggingface_hub's offline mode: weights already in the local cache load as before, missing
ones fail at once, and the error says the Hub was unreachable and what to do instead.

Not probed: when a proxy is configured (the host may be reachable only through it; the fetch
then goes ahead as timm does it), and when the user already set `HF_HUB_OFFLINE`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from distill_cli.errors import DistillError

_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
#: Why the Hub is not reached when the user already asked huggingface_hub to stay offline: the
#: fetch then runs as it is (offline already), only the error says so.
OFFLINE_MODE = "HF_HUB_OFFLINE is set"
#: Seconds the probe waits for a TCP connection to the Hub (a reachable Hub answers in far less).
PROBE_TIMEOUT_S = 3.0


def hub_host() -> tuple[str, int]:
    """The Hub's host and port (`HF_ENDPOINT` where set: a mirror)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached from here (`huggingface.co:443: Name or service not
    known`), or None when it can, or when that cannot be told without a request (a proxy)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return OFFLINE_MODE
    if any(os.environ.get(name) for name in _PROXIES):
        return None
    host, port = hub_host()
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


@contextmanager
def hub_fetch(pretrained: bool) -> Iterator[str | None]:
    """Run a timm build that may fetch pretrained weights; yields why the Hub is unreachable
    (the fetch then uses the local cache only), or None. Without `pretrained`, nothing."""
    reason = hub_unreachable() if pretrained else None
    if reason is None or reason == OFFLINE_MODE:
        yield reason
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read per request (is_offline_mode): cache only, no retries
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = before


def hub_cache() -> str:
    """Where huggingface_hub keeps downloaded weights (`HF_HUB_CACHE`, `HF_HOME`)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def fetch_error(
    model: str, role: str | None, exc: BaseException, offline: str | None
) -> DistillError:
    """`pretrained: true` whose weights could not be had: the Hub unreachable (and the weights
    not in the local cache), or the Hub's own error. Names the recipe key where there is one."""
    key, where = (
        (f"{role}.pretrained", f"{role}.checkpoint") if role else ("pretrained", "checkpoint")
    )
    if offline is not None:
        what = (
            f"cannot fetch pretrained weights for {model!r}: the Hub cannot be reached "
            f"from this machine ({offline}) and they are not in its local cache ({hub_cache()})"
        )
    else:
        what = f"cannot fetch pretrained weights for {model!r}: {str(exc).splitlines()[0]}"
    return DistillError(
        what,
        key,
        f"give {where}: PATH (the weights saved on a machine with Hub access), or copy that "
        "machine's Hub cache here",
    )
