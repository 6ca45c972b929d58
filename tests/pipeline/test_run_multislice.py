"""`napari-aet run` with its defaults on independent data: the pAET multislice NP1 case.

The user's command on the 1.6e4 e/A^2 counts (alignment, background 'auto', RESIRE, Si
preset), scored one-to-one (cutoff 0.9 A) against the true atoms; bar: the published MATLAB
pipeline, 100 % / 100 % / 17.3 pm. The series is already aligned: the common-line and
centre-of-mass seeds measured on its noisy counts are noise, and the alignment must keep
the starting shifts (before the seed check it moved the images by 0.67 px RMS).
"""

import json

import numpy as np
import pytest

from napari_aet.cli import main
from napari_aet.io.coordinates import read_atoms
from tests.core.test_trace_multislice import _case, _score

pytestmark = pytest.mark.slow


def test_run_defaults_meet_the_published_pipeline_at_1p6e4(tmp_path):
    counts, angles, truth, _ = _case()
    np.save(tmp_path / "tilt_series.npy", counts)  # (n, ny, nx), the layout `run` reads
    np.save(tmp_path / "angles_deg.npy", angles)
    out = tmp_path / "out"
    status = main(["run", str(tmp_path / "tilt_series.npy"), "--angles",
                   str(tmp_path / "angles_deg.npy"), "--pixel-size", "0.195", "--preset", "Si",
                   "-o", str(out), "--quiet"])
    assert status == 0
    align = json.loads((out / "run.json").read_text())["metrics"]["align"]
    check = [step for step in align["steps"] if step["step"] == "seed check"]
    assert check and check[0]["kept"] == "initial shifts", align["steps"]
    assert align["shifts_rms_px"] < 0.2
    s = _score(read_atoms(out / "atoms.xyz"), truth, (counts.shape[2],) * 3)
    assert s.recall == 1.0 and s.precision == 1.0, s.summary()
    assert s.rmsd_A <= 0.173, s.summary()
