"""The analysis report: content from core, files written by io."""

import json

import numpy as np

from napari_aet.core.analysis import run_analysis
from napari_aet.core.analysis.report import csv_text, report_files, summary_dict
from napari_aet.core.phantoms import fcc_particle
from napari_aet.io.analysis_report import write_csv, write_report


def test_report_files_are_written_as_core_returns_them(tmp_path):
    atoms = fcc_particle().atoms
    result = run_analysis(atoms, analyses=("pdf", "order"))
    files = report_files(atoms, result)
    assert list(files) == ["atoms.csv", "summary.json"]
    header, *rows = files["atoms.csv"].splitlines()
    assert header.split(",")[:6] == ["x", "y", "z", "element", "q4", "q6"]
    assert len(rows) == len(atoms)
    assert json.loads(files["summary.json"]) == summary_dict(result)
    written = write_report(tmp_path / "report", atoms, result, figures=True, formats=("png",))
    names = sorted(p.name for p in written)
    assert names == sorted(["atoms.csv", "summary.json", "pdf.png", "q4_q6.png",
                            "void_volumes.png", "profiles.png"])
    for name, text in files.items():
        assert (tmp_path / "report" / name).read_text(encoding="utf-8") == text
    assert not list((tmp_path / "report").glob("*.tmp*"))


def test_csv_text_writes_nan_as_empty_fields(tmp_path):
    table = {"a": np.array([1.5, np.nan]), "flag": np.array([True, False])}
    assert csv_text(table) == "a,flag\n1.5,1\n,0\n"
    write_csv(tmp_path / "t.csv", table)
    assert (tmp_path / "t.csv").read_bytes() == b"a,flag\n1.5,1\n,0\n"
