"""End-to-end headless runs: one command from a simulated tilt series to metrics in run.json."""

import json

import numpy as np
import pytest

from napari_aet.cli import main
from napari_aet.io.coordinates import read_atoms
from napari_aet.io.project import load_project, sha256_file
from napari_aet.io.tilt_series import read_volume


def _simulate(folder, *args):
    assert main(["simulate", *args, "-o", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def silica_data(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("silica"), "silica")


@pytest.fixture(scope="module")
def zr_data(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("zr"), "zr", "--diameter", "50")


def _toml(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def silica_run(silica_data, tmp_path_factory):
    """The SiO2 data set (R_noise 10 %) through the whole pipeline from a TOML configuration."""
    folder = tmp_path_factory.mktemp("silica_run")
    config = _toml(folder / "run.toml", f"""
output = "out"

[reconstruct]
iterations = 100

[analysis]
analyses = ["pdf", "order", "structure"]

[[dataset]]
name = "silica"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{silica_data / 'angles.tlt'}"
pixel_size_A = "35 pm"
preset = "SiO2"
truth = "{silica_data / 'truth_atoms.xyz'}"
""")
    assert main(["run", str(config), "--quiet"]) == 0
    out = folder / "out"
    return out, json.loads((out / "run.json").read_text())


def test_silica_end_to_end_reaches_tracing_targets(silica_run):
    out, record = silica_run
    assert record["status"] == "ok"
    score = record["metrics"]["score"]
    # the tracing issue's targets for SiO2 at R_noise 10 %
    assert score["recall"] >= 0.995 and score["precision"] >= 0.995, score
    assert score["label_accuracy"] >= 0.99, score
    assert score["rmsd_A"] < 0.15
    assert record["metrics"]["read"]["pixel_size_A"] == pytest.approx(0.35)  # "35 pm"
    assert record["metrics"]["reconstruct"]["parameters"]["iterations"] == 100
    assert len(record["metrics"]["reconstruct"]["r1_history"]) == 100
    assert record["metrics"]["reconstruct"]["r1_final"] < 0.2


def test_silica_run_writes_every_output_with_checksums(silica_run, silica_data):
    out, record = silica_run
    for name in ("aligned.mrc", "alignment.csv", "volume.mrc", "atoms.xyz", "atoms.extxyz",
                 "atoms.csv", "atoms.mat", "analysis/atoms.csv", "analysis/summary.json",
                 "analysis/pdf.png", "figures/alignment_shifts.png",
                 "figures/r1_convergence.png", "figures/slices_with_atoms.png",
                 "project.aet.h5", "run.json"):
        assert (out / name).is_file(), name
    for name, digest in record["outputs"].items():
        assert sha256_file(out / name) == digest, name
    assert record["inputs"]["tilt_series"]["sha256"] == sha256_file(silica_data / "tilt_series.mrc")
    assert record["software"]["numpy"] == np.__version__
    assert set(record["timings_s"]) >= {"align", "reconstruct", "trace", "analysis", "total"}
    # every format holds the same atoms
    xyz, extxyz = read_atoms(out / "atoms.xyz"), read_atoms(out / "atoms.extxyz")
    counts = record["metrics"]["trace"]["counts"]
    assert len(xyz) == sum(counts.values()) == len(extxyz)
    np.testing.assert_allclose(xyz.positions, extxyz.positions, atol=1e-5)
    assert "integrated_intensity" in extxyz.features
    volume, px = read_volume(out / "volume.mrc")
    assert volume.shape == tuple(record["metrics"]["reconstruct"]["shape"]) and px == pytest.approx(0.35)


def test_silica_run_project_opens_with_every_layer(silica_run):
    out, record = silica_run
    project = load_project(out / "project.aet.h5")
    names = [state["name"] for _, state, _ in project.layers]
    assert names == ["silica tilt series", "silica aligned", "silica volume", "silica atoms"]
    volume, _ = read_volume(out / "volume.mrc")
    np.testing.assert_array_equal(project.layers[2][0], volume)
    atoms_data, atoms_state, layer_type = project.layers[3]
    assert layer_type == "points"
    assert len(atoms_data) == sum(record["metrics"]["trace"]["counts"].values())
    assert {"element", "q6", "structure"} <= set(atoms_state["features"].columns)
    assert project.parameters["run"]["dataset"][0]["name"] == "silica"


def test_zr_core_shell_end_to_end_from_the_simple_command(zr_data, tmp_path):
    out = tmp_path / "zr"
    status = main(["run", str(zr_data / "tilt_series.mrc"), "--angles", str(zr_data / "angles.tlt"),
                   "--preset", "ZrO2", "--truth", str(zr_data / "truth_atoms.xyz"),
                   "--iterations", "100", "-o", str(out), "--quiet"])
    assert status == 0
    record = json.loads((out / "run.json").read_text())
    score = record["metrics"]["score"]
    assert score["scored_species"] == ["Zr"]  # oxygen is not traced in Zr-ZrO2
    assert score["recall"] >= 0.98 and score["precision"] >= 0.98, score
    assert score["rmsd_A"] <= 0.30
    summary = record["metrics"]["analysis"]["summary"]
    assert set(summary["phase_counts"]) == {"metal", "crystalline_oxide", "amorphous_oxide"}
    assert (out / "analysis" / "phases.mrc").is_file()
    truth = json.loads((zr_data / "simulation.json").read_text())
    assert summary["voids"]["vacancy"] == sum(v["kind"] == "vacancy" for v in truth["voids"])


def test_batch_and_exact_repeat_from_run_json(silica_data, tmp_path):
    config = _toml(tmp_path / "batch.toml", f"""
output = "batch"

[reconstruct]
iterations = 15

[analysis]
enabled = false

[export]
formats = ["xyz", "extxyz"]

[[dataset]]
name = "a"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{silica_data / 'angles.tlt'}"
preset = "SiO2"

[[dataset]]
name = "b"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{silica_data / 'angles.tlt'}"
preset = "SiO2"
[dataset.reconstruct]
method = "sirt"
iterations = 10
[dataset.analysis]
enabled = true
analyses = ["pdf"]
elements = ["Zr"]
""")
    # data set b fails in its analysis (no Zr in silica): recorded, a still completes
    assert main(["run", str(config), "--quiet"]) == 1
    batch = json.loads((tmp_path / "batch" / "batch.json").read_text())
    assert [d["status"] for d in batch["datasets"]] == ["ok", "failed"]
    b = json.loads((tmp_path / "batch" / "b" / "run.json").read_text())
    assert b["failure"]["step"] == "analysis" and "Zr" in b["failure"]["error"]
    assert b["metrics"]["reconstruct"]["parameters"]["method"] == "sirt"
    assert (tmp_path / "batch" / "b" / "volume.mrc").is_file()  # work before the failure kept
    a = json.loads((tmp_path / "batch" / "a" / "run.json").read_text())
    assert a["metrics"]["reconstruct"]["parameters"]["iterations"] == 15
    # the run record repeats the run exactly
    assert main(["run", str(tmp_path / "batch" / "a" / "run.json"), "-o",
                 str(tmp_path / "again"), "--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    for name in ("volume.mrc", "atoms.extxyz", "aligned.mrc"):
        assert again["outputs"][name] == a["outputs"][name], name


@pytest.mark.slow
def test_dask_scheduler_equals_serial_run(silica_data, tmp_path):
    pytest.importorskip("distributed")
    common = ["--angles", str(silica_data / "angles.tlt"), "--preset", "SiO2",
              "--iterations", "10", "--quiet"]
    tilt = str(silica_data / "tilt_series.mrc")
    assert main(["run", tilt, *common, "-o", str(tmp_path / "serial")]) == 0
    assert main(["run", tilt, *common, "--scheduler", "local", "-o", str(tmp_path / "dask")]) == 0
    serial, _ = read_volume(tmp_path / "serial" / "volume.mrc")
    dask, _ = read_volume(tmp_path / "dask" / "volume.mrc")
    assert np.linalg.norm(dask - serial) <= 1e-5 * np.linalg.norm(serial)
    record = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert record["metrics"]["reconstruct"]["parameters"]["scheduler"] == "local"
    # SiO2 has no [analysis] table: only the analyses without material constants ran
    analysis = record["metrics"]["analysis"]
    assert analysis["analyses"] == ["pdf", "order", "structure", "voronoi"]
    assert "no [analysis] table" in analysis["note"]
    assert not (tmp_path / "dask" / "analysis" / "voids.csv").exists()


# --- bad input: one clear message before any work ----------------------------------------------

def test_bad_configuration_lists_every_problem_before_work(silica_data, tmp_path, capsys):
    config = _toml(tmp_path / "bad.toml", f"""
output = "never"

[preprocess]
background = "yes"

[reconstruct]
iteratons = 50
method = "art"

[trace]
min_distance_A = "2 deg"

[[dataset]]
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{tmp_path / 'missing.tlt'}"
pixel_size_A = 35
preset = "SiO3"
""")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "7 problems" in err
    assert "preprocess.background = 'yes': must be true, false or \"auto\"" in err
    assert "unknown key reconstruct.iteratons; did you mean 'iterations'?" in err
    assert "reconstruct.method = 'art': must be one of resire, sirt, wbp" in err
    assert "trace.min_distance_A = '2 deg': 'deg' is not a length unit" in err
    assert "missing.tlt does not exist" in err
    assert "35 A is not a plausible pixel size" in err and "pm" in err
    assert "unknown material preset 'SiO3'" in err
    assert not (tmp_path / "never").exists()  # nothing started


def test_inputs_that_do_not_fit_are_reported_before_work(silica_data, tmp_path, capsys):
    angles = np.loadtxt(silica_data / "angles.tlt")
    np.savetxt(tmp_path / "radians.tlt", np.deg2rad(angles))
    np.savetxt(tmp_path / "short.tlt", angles[:-3])
    np.savetxt(tmp_path / "zeros.tlt", 0 * angles)
    config = _toml(tmp_path / "bad.toml", f"""
output = "never"
[[dataset]]
name = "rad"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{tmp_path / 'radians.tlt'}"
[[dataset]]
name = "short"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{tmp_path / 'short.tlt'}"
[[dataset]]
name = "zeros"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{tmp_path / 'zeros.tlt'}"
""")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "dataset 'rad'" in err and "look like radians" in err
    assert "dataset 'short'" in err and "52 angles but the tilt series has 55 images" in err
    assert "dataset 'zeros'" in err and "all 55 angles are 0" in err
    assert not (tmp_path / "never").exists()


def test_simple_form_needs_output_and_rejects_mixed_options(silica_data, tmp_path, capsys):
    tilt = str(silica_data / "tilt_series.mrc")
    assert main(["run", tilt, "--angles", str(silica_data / "angles.tlt")]) == 2
    assert "-o DIR" in capsys.readouterr().err
    config = _toml(tmp_path / "c.toml", f'[[dataset]]\ntilt_series = "{tilt}"\n')
    assert main(["run", str(config), "--preset", "SiO2"]) == 2
    assert "set it in the configuration" in capsys.readouterr().err
    assert main(["run", str(config), "--check"]) == 0  # angles found beside the series
    assert "configuration OK: 1 data set" in capsys.readouterr().out


def test_project_command_info_and_export(silica_run, tmp_path, capsys):
    out, record = silica_run
    assert main(["project", "info", str(out / "project.aet.h5")]) == 0
    text = capsys.readouterr().out
    assert "format 2" in text and "points   silica atoms" in text
    assert main(["project", "export", str(out / "project.aet.h5"), "-o", str(tmp_path),
                 "--formats", "extxyz"]) == 0
    exported = read_atoms(tmp_path / "silica_atoms.extxyz")
    traced = read_atoms(out / "atoms.extxyz")
    np.testing.assert_allclose(exported.positions, traced.positions, atol=1e-6)
    assert exported.elements.tolist() == traced.elements.tolist()
    assert "q6" in exported.features  # analysis columns travel with the layer
    volume, _ = read_volume(tmp_path / "silica_volume.mrc")
    np.testing.assert_array_equal(volume, read_volume(out / "volume.mrc")[0])
    assert main(["project", "info", str(tmp_path / "none.aet.h5")]) == 2


def test_extended_object_options_are_checked(silica_data, tmp_path):
    from napari_aet.pipeline.config import ConfigError, parse_config

    def config(reconstruct):
        return {"output": str(tmp_path / "out"), "reconstruct": reconstruct,
                "dataset": [{"tilt_series": str(silica_data / "tilt_series.mrc"),
                             "angles": str(silica_data / "angles.tlt")}]}

    ok = parse_config(config({"extended_object": True, "extended_box": 1.5}), tmp_path)
    step = ok.datasets[0].steps["reconstruct"]
    assert step["extended_object"] is True and step["extended_box"] == 1.5
    assert parse_config(config({}), tmp_path).datasets[0].steps["reconstruct"][
        "extended_object"] is False
    with pytest.raises(ConfigError) as info:
        parse_config(config({"extended_object": True, "method": "wbp", "extended_box": 0.5}),
                     tmp_path)
    text = str(info.value)
    assert "extended_object needs method resire or sirt" in text and "extended_box" in text


def test_angle_refinement_options_are_checked(silica_data, tmp_path):
    from napari_aet.pipeline.config import ConfigError, parse_config

    def config(reconstruct, **top):
        return {"output": str(tmp_path / "out"), "reconstruct": reconstruct, **top,
                "dataset": [{"tilt_series": str(silica_data / "tilt_series.mrc"),
                             "angles": str(silica_data / "angles.tlt")}]}

    step = parse_config(config({"refine_angles_cycles": 2, "refine_angles": "phi,theta,psi"}),
                        tmp_path).datasets[0].steps["reconstruct"]
    assert (step["refine_angles_cycles"], step["refine_angles"], step["refine_rounds"]) == \
        (2, "phi,theta,psi", 3)
    assert parse_config(config({}), tmp_path).datasets[0].steps["reconstruct"][
        "refine_angles_cycles"] == 0
    with pytest.raises(ConfigError) as info:
        parse_config(config({"refine_angles_cycles": 21, "refine_angles": "psi",
                             "refine_rounds": 0}), tmp_path)
    text = str(info.value)
    assert "reconstruct.refine_angles_cycles = 21: must be <= 20" in text
    assert "reconstruct.refine_angles" in text and "reconstruct.refine_rounds = 0" in text
    with pytest.raises(ConfigError, match="refine_angles_cycles and scheduler"):
        parse_config(config({"refine_angles_cycles": 1}, scheduler="local"), tmp_path)


def test_run_with_angle_refinement_writes_the_refined_angles(silica_data, tmp_path):
    from napari_aet.io.alignment import load_alignment
    from napari_aet.io.tilt_series import read_angles

    config = _toml(tmp_path / "refine.toml", f"""
output = "out"
project = false

[reconstruct]
iterations = 10
refine_angles_cycles = 1
refine_rounds = 2

[analysis]
enabled = false

[export]
formats = ["xyz"]
figures = false

[[dataset]]
name = "silica"
tilt_series = "{silica_data / 'tilt_series.mrc'}"
angles = "{silica_data / 'angles.tlt'}"
preset = "SiO2"
""")
    assert main(["run", str(config), "--quiet"]) == 0
    out = tmp_path / "out"
    record = json.loads((out / "run.json").read_text())
    metrics = record["metrics"]["reconstruct"]
    assert metrics["parameters"]["refine_angles_cycles"] == 1
    refined = load_alignment(out / "angles_refined.csv")
    np.testing.assert_allclose(refined.angles_deg, metrics["refinement"]["angles_deg"])
    np.testing.assert_allclose(refined.shifts_px, metrics["refinement"]["shifts_px"])
    assert len(metrics["refinement"]["residual_history"]) == 2
    start = read_angles(silica_data / "angles.tlt")
    assert np.abs(refined.angles_deg - start).max() > 0.001
    assert "angles_refined.csv" in record["outputs"]
