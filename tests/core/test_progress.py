"""Typed progress records, result objects and the composed entry points of core."""

import numpy as np
import pytest

from napari_aet.core import preprocess
from napari_aet.core.align import align_tilt_series
from napari_aet.core.geometry import linear_tilt_angles
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.prepare import preprocess_and_align
from napari_aet.core.progress import Progress
from napari_aet.core.projectors import gpu_available, make_projector
from napari_aet.core.reconstruct import (
    ReconstructionResult,
    reconstruct,
    reconstruct_iter,
    run_reconstruction,
)


@pytest.fixture(scope="module")
def blobs():
    """Projections ``(15, 24, 24)`` of three Gaussian blobs and their angles (degrees)."""
    return blob_projections(24, ((12, 8, 10), (9, 15, 14), (15, 12, 6)))


def blob_projections(n, centres):
    z, y, x = np.mgrid[:n, :n, :n]
    volume = np.zeros((n, n, n), np.float32)
    for c in centres:
        volume += np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / 4.0)
    angles = linear_tilt_angles(15, -70, 70)
    return make_projector(angles, volume.shape).forward(volume).astype(np.float32), angles


def drive(generator):
    """All yielded records and the return value of a step generator."""
    records = []
    return records, run_to_completion(generator, records.append)


def test_progress_fraction_and_text():
    assert Progress("align", 3, 4).fraction == pytest.approx(0.75)
    assert Progress("align", 5, 4).fraction == 1.0
    assert Progress("align", 2).fraction is None
    assert Progress("trace", 1, 5, stage="candidates", message="12 maxima").text == \
        "candidates: 12 maxima"
    assert Progress("align", 1, 3, stage="common line").text == "common line"


def test_result_r1_history_is_the_yielded_r1(blobs):
    projections, angles = blobs
    support = np.ones((24, 24, 24), bool)
    records, result = drive(run_reconstruction("sirt", projections, angles, iterations=6,
                                               step=1.0, support=support, preview_every=3))
    assert isinstance(result, ReconstructionResult)
    assert all(isinstance(r, Progress) and r.step == "reconstruct" for r in records)
    assert [r.done for r in records] == [1, 2, 3, 4, 5, 6]
    assert {r.total for r in records} == {6}
    assert result.r1_history == [r.r1 for r in records]
    assert result.iterations == 6 and result.r1_final == records[-1].r1
    assert result.r1_history[-1] < result.r1_history[0]
    assert [r.preview is not None for r in records] == [False, False, True, False, False, True]
    assert result.method == "sirt" and result.backend == "cpu" and result.elapsed_s > 0
    assert result.parameters == {"method": "sirt", "iterations": 6, "step": 1.0,
                                 "gpu": False, "scheduler": None}
    plain = run_to_completion(reconstruct_iter("sirt", projections, angles, iterations=6,
                                               support=support))
    np.testing.assert_array_equal(result.volume, plain)
    volume, history = reconstruct("sirt", projections, angles, iterations=6)
    np.testing.assert_array_equal(volume, plain)
    assert history == result.r1_history


def test_wbp_result_has_one_iteration(blobs):
    records, result = drive(run_reconstruction("wbp", *blobs))
    assert len(records) == 1 and result.iterations == 1
    assert result.r1_history == [records[0].r1] and result.r1_final < 1


def test_driver_chooses_dask_when_given_a_scheduler(blobs, monkeypatch):
    import napari_aet.core.dask_recon as dask_recon

    projections, angles = blobs
    calls = []

    def fake_dask(method, tilt_series, angles_deg, scheduler="local", n_slabs=None, **options):
        calls.append((method, scheduler, n_slabs, options))
        yield Progress("reconstruct", 1, 2, stage="round 1 of 1")
        yield Progress("reconstruct", 2, 2, stage="round 1 of 1")
        return np.ones((24, 24, 24), np.float32), [0.5, 0.25]

    monkeypatch.setattr(dask_recon, "reconstruct_dask_iter", fake_dask)
    records, result = drive(run_reconstruction("resire", projections, angles, iterations=2,
                                               scheduler="tcp://scheduler:8786", n_slabs=4))
    assert calls == [("resire", "tcp://scheduler:8786", 4, {"iterations": 2})]
    assert [r.done for r in records] == [1, 2]
    assert result.backend == "dask" and result.r1_history == [0.5, 0.25]
    assert result.parameters["scheduler"] == "tcp://scheduler:8786"
    _, local = drive(run_reconstruction("resire", projections, angles, iterations=2))
    assert local.backend == "cpu" and len(calls) == 1
    with pytest.raises(ValueError, match="GPU and Dask cannot be combined"):
        run_to_completion(run_reconstruction("resire", projections, angles, gpu=True,
                                             scheduler="local"))


def test_dask_cluster_result_equals_local(blobs):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    projections, angles = blobs
    cluster = LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        records, on_dask = drive(run_reconstruction("sirt", projections, angles, iterations=4,
                                                    scheduler=client, n_slabs=3))
    finally:
        client.close()
        cluster.close()
    _, local = drive(run_reconstruction("sirt", projections, angles, iterations=4))
    assert on_dask.backend == "dask" and on_dask.parameters["scheduler"] == "client"
    assert records[-1].done == records[-1].total == 3 and records[-1].r1 is None
    np.testing.assert_allclose(on_dask.volume, local.volume, atol=1e-5 * local.volume.max())
    np.testing.assert_allclose(on_dask.r1_history, local.r1_history, rtol=1e-4)


@pytest.mark.skipif(not gpu_available()[0], reason="needs CuPy and a GPU")
def test_gpu_result_matches_cpu(blobs):
    _, cpu = drive(run_reconstruction("resire", *blobs, iterations=10))
    records, gpu = drive(run_reconstruction("resire", *blobs, iterations=10, gpu=True))
    assert gpu.backend == "gpu" and gpu.r1_history == [r.r1 for r in records]
    np.testing.assert_allclose(gpu.r1_history, cpu.r1_history, rtol=1e-3)
    np.testing.assert_allclose(gpu.volume, cpu.volume, atol=1e-3 * cpu.volume.max())


def test_preprocess_and_align_composes_the_steps_in_order():
    projections, angles = blob_projections(80, ((40, 36, 38), (37, 43, 42), (43, 40, 34)))
    rng = np.random.default_rng(0)
    series = projections + 0.05 * projections.max() + rng.normal(0, 0.01, projections.shape)
    options = dict(projection_matching_rounds=1, binning=1, sirt_iterations=5)
    records, prepared = drive(preprocess_and_align(series, angles, background="on",
                                                   normalize=True, **options))
    assert [r.step for r in records] == ["preprocess"] * 2 + ["align"] * 5
    assert [r.done for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert {r.total for r in records} == {7}
    assert records[0].stage.startswith("background subtracted (film level")
    assert [r.stage for r in records[1:]] == ["normalise", "tilt axis", "common line",
                                              "centre of mass", "seed check",
                                              "projection matching"]
    assert records[5].message.startswith("kept the ")  # the seed check says what it kept
    assert prepared.applied == ["background", "normalize"]
    assert prepared.background is not None and prepared.film_masks.dtype == bool
    assert set(prepared.timings_s) == {"preprocess", "align"}
    expected, _ = preprocess.normalize_intensity(
        preprocess.background_for_alignment(series, "on")[0])
    np.testing.assert_allclose(prepared.images, expected, rtol=1e-6, atol=1e-6)
    direct = run_to_completion(align_tilt_series(prepared.images, angles, **options))
    np.testing.assert_allclose(prepared.aligned, direct.aligned)
    np.testing.assert_allclose(prepared.alignment.shifts_px, direct.shifts_px)
    records, plain = drive(preprocess_and_align(series, angles, background="off", align=False))
    assert plain.alignment is None and plain.applied == [] and len(records) == 1
    np.testing.assert_array_equal(plain.aligned, plain.images)
