"""The README's library example runs as printed, and its service knows its positions."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_library_example_refuses_an_order_over_the_position_limit(tmp_path, capsys, monkeypatch):
    [example] = [
        block
        for block in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
        if "ExecutionService" in block
    ]
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out.split()
    # 900 held + 500 bought would exceed max_position = 1000: refused, because start() read them.
    assert printed[:2] == ["REJECTED", "MAX_POSITION"]
    assert "(now 900," in " ".join(printed)
