"""Bad inputs, round 15: numbers as notebooks and slips give them (numpy and torch scalars,
fractions where a count belongs, whole numbers beyond int64), overrides of the wrong shape,
and the other corners this round's battery found."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import refused

HUGE = 10**400


@pytest.mark.parametrize(
    "key",
    ["schedule.epochs", "data.synthetic.train_size", "optim.lr", "student.input_size", "name"],
)
def test_a_whole_number_beyond_int64_in_a_recipe_is_one_line_naming_its_key(
    fm: Path, key: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """`epochs: 999...9` (400 digits) was an OverflowError traceback from the bound's `:g`
    (train_size: 'integer division result too large for a float'), other keys printed all
    400 digits."""
    line = refused(["run", str(fm), "--dry-run", "--set", f"{key}={HUGE}"], key, capfd)
    assert "401-digit number, too large" in line and len(line) < 300, line


def test_a_whole_number_beyond_int64_in_a_recipe_file_or_list(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Past Python's 4,300 digits int() itself raised (a ValueError traceback from the YAML
    loader); a `--set` of as many was pydantic's message with all 5,000 digits."""
    text = fm.read_text()
    fm.write_text(text.replace("epochs: 2", f"epochs: {'9' * 5000}"))
    line = refused(["run", str(fm), "--dry-run"], "a 5,000-digit number", capfd)
    assert len(line) < 300 and "fm.yaml:" in line
    fm.write_text(text)
    line = refused(
        ["run", str(fm), "--dry-run", "--set", f"schedule.epochs={'9' * 5000}"],
        "schedule.epochs: a 5,000-digit number",
        capfd,
    )
    assert len(line) < 300
    refused(
        ["run", str(fm), "--dry-run", "--set", f"student.input_size=[24, {HUGE}]"],
        "student.input_size: a 401-digit",
        capfd,
    )


def test_the_largest_whole_number_still_meets_its_keys_own_bound(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    refused(
        ["run", str(fm), "--dry-run", "--set", f"schedule.epochs={2**63 - 1}"],
        "schedule.epochs: 9.22337e+18 is outside 1 to 1e+12",
        capfd,
    )

