"""Failed items under one configuration never block a corrected rerun, and the summary says why items failed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from geodite.tasks.contract import PROTOCOL
from geodite.tasks.runner import RunOptions, failure_reasons, run_task
from geodite.tasks.store import ConfigMismatchError
from tests.tasks.runner_helpers import SleepTask


@dataclass
class SettingTask(SleepTask):
    """SleepTask whose items all fail while ``setting`` is "bad" (a bad option that every item trips on)."""

    setting: str = field(default="good", metadata=PROTOCOL)

    def run_item(self, item: dict, ctx) -> dict:
        if self.setting == "bad" or (self.setting == "half" and item["index"] % 2):
            raise ValueError(f"cannot run with setting {self.setting!r}")
        return super().run_item(item, ctx)


def _options(tmp_path, **kwargs) -> RunOptions:
    return RunOptions(model="emt", results_dir=tmp_path, progress=False, plots=False, **kwargs)


def test_failed_rows_of_another_configuration_do_not_block_the_corrected_run(tmp_path):
    bad = run_task(SettingTask(n=3, setting="bad"), _options(tmp_path))
    assert bad["n_failed"] == 3 and bad["failure_reasons"] == ["3× ValueError: cannot run with setting 'bad'"]
    messages: list[str] = []
    good = run_task(SettingTask(n=3, setting="good"), _options(tmp_path), log=messages.append)
    assert (good["n_skipped"], good["n_computed"], good["n_failed"], good["n_ok"]) == (0, 3, 0, 3)
    assert any("discarded 3 failed item(s) of another configuration" in m for m in messages)


def test_results_of_another_configuration_are_still_refused(tmp_path):
    run_task(SettingTask(n=4, setting="half"), _options(tmp_path))  # 2 ok rows: real results
    with pytest.raises(ConfigMismatchError, match="--fresh"):
        run_task(SettingTask(n=4, setting="good"), _options(tmp_path))


def test_failure_reasons_count_the_commonest_errors_first():
    import pandas as pd

    df = pd.DataFrame({"key": list("abcde"), "status": ["failed", "failed", "ok", "failed", "failed"],
                       "error": ["X: one", "X: two", None, "X: two", None]})
    assert failure_reasons(df) == ["2× X: two", "1× X: one", "1× no error recorded"]
    assert failure_reasons(df.drop(columns="error")) == ["4× no error recorded"]


def test_an_ok_row_with_nothing_but_key_and_status_is_set_aside_and_recomputed(tmp_path):
    """Such a row made every rerun fail in the metrics or the submission files (TypeError in submission.py)."""
    from geodite.tasks.store import ResultStore

    run_task(SleepTask(n=3), _options(tmp_path))
    store = ResultStore(tmp_path / "sleep" / "emt" / "store")
    with open(store.rows_path, "a") as handle:
        handle.write('{"key": "item001", "status": "ok"}\n')
    messages: list[str] = []
    summary = run_task(SleepTask(n=3), _options(tmp_path), log=messages.append)
    assert any('line 4: an "ok" row without results' in m for m in messages)
    assert summary["n_ok"] == 3 and store.read_rows()["item001"]["index"] == 1
