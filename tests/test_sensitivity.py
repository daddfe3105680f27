"""Smoke test of ``benchmarks/sensitivity.py``: ``--quick`` runs and writes what it promises
(one CSV per study, the PNG, the doc's generated block). No number is checked here: the
sensitivity table is what the script reports, and other tests pin the physics."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sensitivity.py"
STUDIES = ("balloon_vs_host_swap", "rate_adaptation", "idle_tax", "vcpu_ballooning")


def _script():
    spec = importlib.util.spec_from_file_location("sensitivity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_csvs_png_and_the_doc_block(tmp_path: Path, capsys) -> None:
    script = _script()
    doc = tmp_path / "sensitivity.md"
    doc.write_text(f"# Title\n\nkept\n\n{script.BEGIN}\nold\n{script.END}\n\nkept too\n")
    assert script.main(["--quick", "--seeds", "2", "--out", str(tmp_path), "--doc", str(doc)]) == 0
    for key in STUDIES:
        with (tmp_path / f"{key}.csv").open(newline="") as fh:
            rows = list(csv.reader(fh))
        assert len(rows) >= 3 and all(len(r) == len(rows[0]) for r in rows), key
    assert (tmp_path / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert text.startswith("# Title\n\nkept\n") and text.endswith("kept too\n")
    assert "old" not in text and "### (d) vCPU ballooning" in text
    assert "### (a) Balloon vs host swap" in capsys.readouterr().out
