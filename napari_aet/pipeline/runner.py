"""The headless pipeline: preprocess -> align -> reconstruct -> trace -> analyse -> export.

:func:`run_pipeline` checks the whole configuration and opens every input first, then runs
each data set into its folder::

    aligned.mrc, alignment.csv        the aligned tilt series and its shifts (pixels)
    volume.mrc                        the reconstruction (Angstrom voxel size)
    angles_refined.csv                with angle refinement: the refined angles and shifts
                                      (pixels, applied to aligned.mrc), alignment format
    atoms.xyz / .extxyz / .csv / .mat the traced atoms (x y z Angstrom, volume frame)
    analysis/                         per-atom and void tables, summary.json, figures
    figures/                          alignment shifts, R1 convergence, slices with atoms
    project.aet.h5                    the layers, ready to open and curate in napari
    run.json                          every parameter, input and output checksum, software
                                      versions, timings and metrics

``napari-aet run DIR/run.json`` repeats a run with exactly the recorded parameters.
Every file is written atomically; a failing data set is recorded in its run.json and the
batch goes on with the next one.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_aet.pipeline.config import Dataset, RunConfig, check_inputs

RUN_FORMAT = "napari-aet run"
RUN_VERSION = 1
#: Analyses whose parameters do not depend on the material (run for presets without [analysis]).
MATERIAL_FREE_ANALYSES = ("pdf", "order", "structure", "voronoi")


class _NullBar:
    def set_total(self, total):
        pass

    def update(self, n_done, text=""):
        pass

    def close(self):
        pass


def _no_bar(total, desc):
    return _NullBar()


def _write_json(path: Path, payload) -> None:
    from napari_aet.core.analysis.report import json_ready
    from napari_aet.io.atomic import atomic_write

    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(json_ready(payload), indent=1), encoding="utf-8")


class _DatasetRun:
    """State of one data set as it goes through the steps."""

    def __init__(self, dataset: Dataset, out: Path, config: RunConfig, bar, log):
        from napari_aet.io.project import sha256_file, software_versions

        self.d, self.out, self.config, self.bar, self.log = dataset, out, config, bar, log
        self.p = dataset.steps
        self.timings: dict[str, float] = {}
        self.metrics: dict = {}
        self.outputs: list[Path] = []
        self.layers: list[tuple] = []
        self.analysis_summary = None
        self.prepared = None
        inputs = {"tilt_series": dataset.tilt_series, "angles": dataset.angles,
                  "truth": dataset.truth}
        self.record = {
            "format": RUN_FORMAT, "format_version": RUN_VERSION, "dataset": dataset.name,
            "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": {k: {"path": str(v), "sha256": sha256_file(v)} for k, v in inputs.items()
                       if v is not None},
            "software": software_versions(),
        }

    # --- helpers ------------------------------------------------------------------------------
    def _timed(self, name: str, fn):
        t0 = time.perf_counter()
        value = fn()
        self.timings[name] = round(time.perf_counter() - t0, 3)
        return value

    def _drive(self, generator, total: int, desc: str):
        """Run a step generator to its result with a progress bar (each
        :class:`~napari_aet.core.progress.Progress` sets the bar's total, count and text)."""
        from napari_aet.core.jobs import run_to_completion

        bar = self.bar(total, desc)

        def show(info):
            if info.total:
                bar.set_total(info.total)
            bar.update(info.done, info.stage or info.message)

        try:
            return run_to_completion(generator, show)
        finally:
            bar.close()

    def _written(self, path: Path) -> Path:
        self.outputs.append(path)
        return path

    # --- steps ----------------------------------------------------------------------------------
    def read(self):
        from napari_aet import layers as L
        from napari_aet.core.align import validate_tilt_series
        from napari_aet.io import tilt_series as ts

        series, px = ts.read_tilt_series(self.d.tilt_series, self.d.pixel_size_A)
        angles = (ts.read_angles(self.d.angles, n_images=series.shape[0]) if self.d.angles
                  else ts.read_stack(self.d.tilt_series, px).angles_deg)
        self.series, self.angles = validate_tilt_series(series, angles)
        self.px = float(px)
        source = L.provenance_step("read", {"path": str(self.d.tilt_series)},
                                   source=str(self.d.tilt_series))
        self.layers.append(L.tilt_series_tuple(self.series, self.angles, self.px,
                                               name=f"{self.d.name} tilt series",
                                               provenance=[source]))
        self.metrics["read"] = {"shape": list(self.series.shape), "pixel_size_A": self.px,
                                "tilt_range_deg": [float(self.angles[:, 1].min()),
                                                   float(self.angles[:, 1].max())]}

    def preprocess(self):
        """Preprocess and align (:func:`napari_aet.core.prepare.preprocess_and_align`); the
        alignment's outputs are written by :meth:`align`."""
        from napari_aet.core.align import AlignParameters
        from napari_aet.core.prepare import preprocess_and_align

        p, a = self.p["preprocess"], self.p["align"]
        background = {True: "on", False: "off"}.get(p["background"], p["background"])
        options = AlignParameters(**{k: v for k, v in a.items() if k != "enabled"}).options()
        generator = preprocess_and_align(
            self.series, self.angles, denoise=p["denoise"], denoise_strength=p["denoise_strength"],
            background=background, normalize=p["normalize"], align=a["enabled"], **options)
        self.prepared = prepared = self._drive(generator, 1, "preprocess and align")
        if prepared.background is not None:
            self.log(f"subtracted the background (film level {100 * prepared.film_level:.1f} % "
                     "of the peak)")
        self.work = prepared.images
        self.metrics["preprocess"] = {"applied": prepared.applied,
                                      "film_level": prepared.film_level}

    def align(self):
        from napari_aet import layers as L
        from napari_aet.io.alignment import Alignment, save_alignment
        from napari_aet.io.tilt_series import write_mrc

        p = self.p["align"]
        result = self.prepared.alignment
        if result is None:
            self.aligned, self.shifts, self.tilt_axis = self.work, np.zeros((len(self.work), 2)), 0.0
            self.metrics["align"] = {"enabled": False}
            return
        self.aligned, self.shifts = result.aligned, result.shifts_px
        self.tilt_axis = result.tilt_axis_deg
        rms = float(np.sqrt(np.mean(self.shifts**2)))
        self.metrics["align"] = {"enabled": True, "shifts_rms_px": rms,
                                 "shifts_max_px": float(np.abs(self.shifts).max()),
                                 "tilt_axis_deg": self.tilt_axis, "steps": result.steps}
        save_alignment(self._written(self.out / "alignment.csv"),
                       Alignment(self.angles, self.shifts, self.tilt_axis, self.px, result.steps))
        if self.p["export"]["aligned_series"]:
            write_mrc(self._written(self.out / "aligned.mrc"), self.aligned, self.px)
        prov = [L.provenance_step("align", {k: v for k, v in p.items()},
                                  source=f"{self.d.name} tilt series")]
        self.layers.append(L.tilt_series_tuple(self.aligned, self.angles, self.px,
                                               name=f"{self.d.name} aligned", provenance=prov,
                                               shifts_px=self.shifts))

    def reconstruct(self):
        from napari_aet import layers as L
        from napari_aet.core import reconstruct as R
        from napari_aet.io.tilt_series import write_mrc

        p = self.p["reconstruct"]
        method = p["method"]
        options = R.ReconstructParameters(**p).options()
        iterations = options["iterations"]
        R.check_inputs(self.aligned, self.angles)
        desc = f"{method} (dask)" if self.config.scheduler else method
        result = self._drive(R.run_reconstruction(
            method, self.aligned, self.angles, gpu=p["gpu"], scheduler=self.config.scheduler,
            preview_every=0, **options), iterations, desc)
        self.volume = result.volume
        self.r1 = result.r1_history
        write_mrc(self._written(self.out / "volume.mrc"), self.volume, self.px)
        used = result.parameters
        self.metrics["reconstruct"] = {"shape": list(self.volume.shape), "parameters": used,
                                       "r1_final": self.r1[-1] if self.r1 else None,
                                       "r1_history": self.r1}
        refined = {}
        if result.refinement is not None:
            from napari_aet.io.alignment import Alignment, save_alignment

            r = result.refinement
            refined = {"angles_deg": r.angles_deg, "shifts_px": r.shifts_px}
            self.metrics["reconstruct"]["refinement"] = {
                "angles_deg": r.angles_deg.tolist(), "shifts_px": r.shifts_px.tolist(),
                "residual_history": r.residual_history,
                "angle_change_rms_deg": np.sqrt(((r.angles_deg - self.angles) ** 2).mean(0)).tolist(),
                "file": "angles_refined.csv"}
            save_alignment(self._written(self.out / "angles_refined.csv"),
                           Alignment(r.angles_deg, r.shifts_px, pixel_size_A=self.px))
        prov = [L.provenance_step("reconstruct", used, source=f"{self.d.name} aligned")]
        self.layers.append(L.volume_tuple(self.volume, self.px, name=f"{self.d.name} volume",
                                          provenance=prov, r1_history=self.r1, **refined))

    def trace(self):
        from napari_aet.core.trace import TRACE_STAGES, trace_atoms

        p = {k: v for k, v in self.p["trace"].items() if v is not None and k != "preset"}
        elements = p.pop("elements", None)
        min_distance = p.pop("min_distance_A", None)
        gen = trace_atoms(self.volume, self.px, preset=self.d.preset, elements=elements,
                          min_distance_A=min_distance, **p)
        result = self._drive(gen, len(TRACE_STAGES), "trace")
        self.trace_result = result
        self.atoms = result.atoms
        self.metrics["trace"] = {"n_atoms": len(self.atoms), "counts": self.atoms.counts(),
                                 "n_candidates": len(result.candidates),
                                 "species": result.species, "threshold": result.threshold,
                                 "parameters": result.parameters}

    def score(self):
        from napari_aet.core.scoring import score_atoms
        from napari_aet.io.coordinates import read_atoms

        truth = read_atoms(self.d.truth)
        species = set(self.trace_result.species) - {"X"}
        if species and set(truth.elements.tolist()) & species:
            truth = truth.select(np.isin(truth.elements, sorted(species)))
        traced = self.atoms
        guess = (traced.positions.mean(0) - truth.positions.mean(0)) if len(traced) else None
        s = score_atoms(traced, truth, cutoff_A=self.p["score"]["cutoff_A"], initial_shift_A=guess)
        self.metrics["score"] = {
            "truth": str(self.d.truth), "cutoff_A": self.p["score"]["cutoff_A"],
            "scored_species": sorted(set(truth.elements.tolist())),
            "recall": s.recall, "precision": s.precision, "rmsd_A": s.rmsd_A,
            "label_accuracy": s.label_accuracy, "n_true": s.n_true, "n_traced": s.n_traced,
            "n_matched": s.n_matched, "shift_A": s.shift_A, "by_element": s.by_element}
        self.log(s.summary())

    def analysis(self):
        from napari_aet.core.analysis import (
            ANALYSES,
            analyse_all,
            analyse_with_preset,
            analysis_steps,
            preset_analyses,
            preset_thresholds,
        )
        from napari_aet.core.analysis.report import atoms_table, summary_dict
        from napari_aet.core.presets import load_preset
        from napari_aet.io.analysis_report import write_report
        from napari_aet.io.tilt_series import write_mrc

        p = dict(self.p["analysis"])
        if not p.pop("enabled"):
            self.metrics["analysis"] = {"enabled": False}
            return
        analyses, figures = p.pop("analyses"), p.pop("figures")
        overrides = {k: v for k, v in p.items() if v is not None}
        preset = load_preset(self.d.preset)
        has_table = "analysis" in preset
        thresholds, source, _ = preset_thresholds(self.d.preset)
        note = None
        if list(analyses) == list(ANALYSES) and "analyses" in preset:
            analyses = list(preset_analyses(self.d.preset))  # those that suit the material
        elif not has_table and list(analyses) == list(ANALYSES):
            # void, oxidation and phase thresholds are material constants: unattended, without
            # a preset [analysis] table or list of analyses, run only the material-free ones
            analyses = [a for a in ANALYSES if a in MATERIAL_FREE_ANALYSES]
            note = (f"preset {self.d.preset!r} has no [analysis] table: voids, oxidation and "
                    "phases skipped (their thresholds are material constants); list them in "
                    f"[analysis] analyses to run them with {source}, or give the thresholds")
            self.log(note)
        if set(analyses) <= set(MATERIAL_FREE_ANALYSES):
            # no void, oxygen or metal threshold is used: nothing to scale to the atoms' PDF
            gen = analyse_all(self.atoms, thresholds.updated(**overrides), analyses,
                              self.volume.shape, self.px)
        else:  # the thresholds as the Analyse widget and `napari-aet analyze --preset` have them
            gen = analyse_with_preset(self.atoms, self.d.preset, overrides, analyses,
                                      self.volume.shape, self.px)
        total = 1 + len(analysis_steps(analyses, with_volume=True))
        result = self._drive(gen, total, "analyse")
        params, source = result.params, result.summary.get("thresholds_source", source)
        folder = self.out / "analysis"
        self.outputs += write_report(folder, self.atoms, result, figures=figures,
                                     formats=("png",))
        self.analysis_summary = summary_dict(result)
        self.metrics["analysis"] = {"enabled": True, "analyses": list(analyses),
                                    "parameters": vars(params), "thresholds_source": source,
                                    "summary": self.analysis_summary}
        if note:
            self.metrics["analysis"]["note"] = note
        table = atoms_table(self.atoms, result)
        self.analysis_columns = {k: v for k, v in table.items() if k not in ("x", "y", "z",
                                                                            "element")}
        if result.phase_volume is not None:
            from napari_aet import layers as L

            write_mrc(self._written(folder / "phases.mrc"), result.phase_volume, self.px)
            meta = L.aet_metadata("overlay", self.px, [L.provenance_step(
                "analyse", {"analyses": analyses}, source=f"{self.d.name} atoms")])
            self.layers.append((result.phase_volume, {
                "name": f"{self.d.name} phases", "scale": (self.px,) * 3, "metadata": meta,
                "opacity": 0.4, "visible": False}, "labels"))

    def export(self):
        from napari_aet import layers as L
        from napari_aet.core.atoms import Atoms
        from napari_aet.io.coordinates import write_atoms

        counts = ", ".join(f"{e} {n}" for e, n in self.atoms.counts().items())
        for fmt in self.p["export"]["formats"]:
            path = self._written(self.out / f"atoms.{fmt}")
            if fmt == "xyz":
                write_atoms(path, self.atoms, comment=f"napari-aet run {self.d.name}: {counts}; "
                                                      "Angstrom, volume frame")
            elif fmt == "mat":
                write_atoms(path, self.atoms, pixel_size_A=self.px)
            else:
                write_atoms(path, self.atoms)
        features = dict(self.atoms.features)
        features.update(getattr(self, "analysis_columns", {}))
        atoms = Atoms(self.atoms.positions, self.atoms.elements, features)
        prov = [L.provenance_step("trace", self.metrics["trace"]["parameters"],
                                  source=f"{self.d.name} volume")]
        self.atoms_layer_name = f"{self.d.name} atoms"
        self.layers.append(L.atoms_tuple(atoms, self.px, name=self.atoms_layer_name,
                                         provenance=prov))
        if self.p["export"]["figures"]:
            from napari_aet.pipeline.figures import write_run_figures

            self.outputs += write_run_figures(self.out / "figures", self)

    def project(self):
        from napari.layers import Layer

        from napari_aet.io.project import save_project

        layers = [Layer.create(*t) for t in self.layers]
        analysis = {self.atoms_layer_name: self.analysis_summary} if self.analysis_summary else {}
        path = save_project(self.out / "project.aet.h5", layers, analysis=analysis,
                            parameters={"run": self.config_record()},
                            embed_tilt_series=self.config.embed_tilt_series)
        self._written(path)

    def config_record(self) -> dict:
        single = RunConfig(self.out, self.config.scheduler, self.config.embed_tilt_series,
                           self.config.project, [self.d], self.config.source)
        return single.to_dict()

    # --- the whole data set --------------------------------------------------------------------
    def run(self) -> dict:
        from napari_aet.io.project import sha256_file

        steps = [("read", self.read), ("preprocess", self.preprocess), ("align", self.align),
                 ("reconstruct", self.reconstruct), ("trace", self.trace)]
        if self.d.truth is not None:
            steps.append(("score", self.score))
        steps += [("analysis", self.analysis), ("export", self.export)]
        if self.config.project:
            steps.append(("project", self.project))
        failed = None
        for name, fn in steps:
            self.log(f"[{self.d.name}] {name}")
            try:
                self._timed(name, fn)
            except Exception as exc:  # recorded in run.json; the batch goes on
                failed = {"step": name, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc(limit=6)}
                self.log(f"[{self.d.name}] {name} failed: {exc}")
                break
        if self.prepared is not None and "align" in self.prepared.timings_s:
            # the alignment ran within the preprocess step: book its time under "align"
            moved = self.prepared.timings_s["align"]
            self.timings["preprocess"] = round(self.timings["preprocess"] - moved, 3)
            self.timings["align"] = round(self.timings.get("align", 0.0) + moved, 3)
        self.record.update({
            "status": "failed" if failed else "ok",
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timings_s": {**self.timings, "total": round(sum(self.timings.values()), 3)},
            "metrics": self.metrics,
            "outputs": {str(p.relative_to(self.out)): sha256_file(p) for p in self.outputs
                        if p.is_file()},
            "config": self.config_record(),
        })
        if failed:
            self.record["failure"] = failed
        _write_json(self.out / "run.json", self.record)
        return self.record


def run_pipeline(config: RunConfig, progress_bar=None, log: Callable[[str], None] | None = None
                 ) -> list[dict]:
    """Run every data set of ``config``; return their run records (also in each run.json).

    ``progress_bar(total, description)`` makes a bar with ``update(n, text)``,
    ``set_total(n)`` and ``close()`` (the command line passes a terminal bar); ``log(text)``
    receives one line per step. Inputs are checked before any work
    (:func:`napari_aet.pipeline.config.check_inputs`).
    """
    log = log or (lambda text: None)
    bar = progress_bar or _no_bar
    check_inputs(config)
    config.output.mkdir(parents=True, exist_ok=True)
    records = []
    for d in config.datasets:
        out = config.output if len(config.datasets) == 1 else config.output / d.name
        out.mkdir(parents=True, exist_ok=True)
        records.append(_DatasetRun(d, out, config, bar, log).run())
    if len(config.datasets) > 1:
        _write_json(config.output / "batch.json", {
            "format": RUN_FORMAT, "datasets": [
                {"name": r["dataset"], "status": r["status"], "folder": r["dataset"],
                 "timings_s": r.get("timings_s"), "score": r["metrics"].get("score"),
                 "counts": r["metrics"].get("trace", {}).get("counts")} for r in records]})
    return records
