"""One definition per step's parameters: the widget forms, the run configuration, the command
line and the project files show the same defaults, ranges and choices."""

import json

import numpy as np
import pytest

from napari_aet.cli import build_parser
from napari_aet.core.align import DEFAULTS as ALIGN_DEFAULTS
from napari_aet.core.align import AlignParameters, align_tilt_series
from napari_aet.core.analysis import AnalysisParameters
from napari_aet.core.curation import REVIEW_SETTINGS, ReviewParameters, review_queue
from napari_aet.core.parameters import UNIT_SUFFIXES, parameter, parameter_map, parameters
from napari_aet.core.preprocess import PreprocessParameters
from napari_aet.core.reconstruct import DEFAULTS as RECONSTRUCT_DEFAULTS
from napari_aet.core.reconstruct import ReconstructParameters
from napari_aet.core.scoring import ScoreParameters
from napari_aet.core.trace import MAIN_PARAMETERS, TraceParameters
from napari_aet.pipeline.config import SCHEMA, ConfigError, parse_config

STEPS = [PreprocessParameters, AlignParameters, ReconstructParameters, TraceParameters,
         AnalysisParameters, ScoreParameters]
#: Parameters of steps outside the run configuration (curation is by hand).
INTERACTIVE = [ReviewParameters]
CONFIG_TABLE = {PreprocessParameters: "preprocess", AlignParameters: "align",
                ReconstructParameters: "reconstruct", TraceParameters: "trace",
                AnalysisParameters: "analysis", ScoreParameters: "score"}


def _outside(p):
    """Values just outside the field's range."""
    span = (p.max - p.min) if p.min is not None and p.max is not None else 1.0
    out = []
    if p.min is not None:
        out.append(p.min - 0.01 * span if p.type is float else p.min - 1)
    if p.max is not None:
        out.append(p.max + 0.01 * span if p.type is float else p.max + 1)
    return out


# --- the descriptions themselves --------------------------------------------------------------

@pytest.mark.parametrize("cls", STEPS + INTERACTIVE, ids=lambda c: c.__name__)
def test_every_field_is_described_with_its_unit_in_its_name(cls):
    for p in parameters(cls):
        assert p.help, p.name
        if p.unit is not None:  # the configuration converts "0.35 nm" by the name's suffix
            assert p.name.endswith(UNIT_SUFFIXES[p.unit]), p.name
        if p.default is not None:
            assert p.check(p.default) is None, (p.name, p.default)
        for value in _outside(p):
            assert p.check(value) is not None, (p.name, value)
        if p.choices is not None:
            assert p.check("no such choice") is not None


def test_a_field_without_a_description_is_refused():
    from dataclasses import dataclass

    @dataclass
    class Bad:
        radius_A: float = parameter(1.0, unit="A", help="radius")
        plain: int = 3

    with pytest.raises(TypeError, match="plain"):
        parameters(Bad)


def test_core_defaults_come_from_the_dataclasses():
    import inspect

    signature = inspect.signature(align_tilt_series).parameters
    assert ALIGN_DEFAULTS == AlignParameters().options()
    assert {k: signature[k].default for k in ALIGN_DEFAULTS} == ALIGN_DEFAULTS
    assert ReconstructParameters().options()["iterations"] == RECONSTRUCT_DEFAULTS["resire"][0]
    assert ReconstructParameters(method="wbp", iterations=50).options()["iterations"] == 1
    assert TraceParameters.from_preset("ZrO2").min_distance_A == 2.0
    assert TraceParameters.from_preset("SiO2", fit_radius_A=0.9).fit_radius_A == 0.9
    review = inspect.signature(review_queue).parameters
    assert {k: review[k].default for k in parameter_map(ReviewParameters)} == \
        vars(ReviewParameters())
    d_min, trace_d_min = (parameter_map(ReviewParameters)["d_min_A"],
                          parameter_map(TraceParameters)["min_distance_A"])
    assert (d_min.default, d_min.min, d_min.max) == \
        (trace_d_min.default, trace_d_min.min, trace_d_min.max)


# --- the run configuration ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", STEPS, ids=lambda c: c.__name__)
def test_config_schema_has_the_fields_defaults_and_ranges(cls):
    table = SCHEMA[CONFIG_TABLE[cls]]
    preset_decides = cls in (TraceParameters, AnalysisParameters)
    for p in parameters(cls):
        types, default, check = table[p.name]
        assert default == (None if preset_decides else p.default), p.name
        for value in [v for v in (p.min, p.max) if v is not None]:
            assert check is None or check(p.type(value)) is None, (p.name, value)
        for value in _outside(p):
            assert check(value) is not None, (p.name, value)
        for choice in p.choices or ():
            assert check(choice) is None


def test_config_rejects_out_of_range_values_naming_the_key(tmp_path):
    raw = {"dataset": [{"name": "a", "tilt_series": str(tmp_path / "missing.mrc")}],
           "align": {"tilt_axis_deg": 200.0}, "trace": {"fit_radius_A": 4.0},
           "reconstruct": {"step": 20.0}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path)
    problems = "\n".join(info.value.problems)
    assert "align.tilt_axis_deg = 200.0: must be <= 180" in problems
    assert "reconstruct.step = 20.0: must be <= 10" in problems
    assert "fit_radius_A" not in problems  # 4 A is within 0.2-5 A


# --- the command line ---------------------------------------------------------------------------

def _defaults(argv):
    return vars(build_parser().parse_args(argv))


def test_command_line_defaults_and_choices_are_the_fields():
    align = _defaults(["align", "t.mrc", "--angles", "a.tlt", "-o", "o.mrc"])
    for cls in (PreprocessParameters, AlignParameters):
        for p in parameters(cls):
            if p.name in align:
                assert align[p.name] == p.default, p.name
    assert AlignParameters(**{k: align[k] for k in parameter_map(AlignParameters)}) == \
        AlignParameters()
    recon = _defaults(["reconstruct", "t.mrc", "--angles", "a.tlt", "-o", "v.mrc"])
    for name in ("method", "iterations", "step", "tight_support", "positivity", "subpixel", "gpu"):
        assert recon[name] == getattr(ReconstructParameters(), name), name
    trace = _defaults(["trace", "v.mrc", "-o", "a.xyz"])
    assert all(trace[name] is None for name in MAIN_PARAMETERS)  # the preset decides
    # choices, option names and a value given
    parser = build_parser()
    for argv, key in ((["reconstruct", "t", "--angles", "a", "-o", "v", "--method"], "method"),
                      (["trace", "v", "-o", "a", "--method"], "method"),
                      (["align", "t", "--angles", "a", "-o", "o", "--reference"], "reference")):
        cls = {"reconstruct": ReconstructParameters, "trace": TraceParameters,
               "align": AlignParameters}[argv[0]]
        for choice in parameter_map(cls)[key].choices:
            assert getattr(parser.parse_args(argv + [choice]), key) == choice
        with pytest.raises(SystemExit):
            parser.parse_args(argv + ["bogus"])
    args = parser.parse_args(["trace", "v", "-o", "a", "--fit-radius", "0.9", "--no-template-test"])
    assert args.fit_radius_A == 0.9 and args.template_test is False
    args = parser.parse_args(["align", "t", "--angles", "a", "-o", "o", "--tilt-axis", "-120",
                              "--projection-matching", "2", "--no-common-line"])
    assert args.tilt_axis_deg == -120 and args.projection_matching_rounds == 2
    assert args.common_line is False


def test_curate_check_options_are_the_review_fields(capsys):
    check = _defaults(["curate-check", "a.xyz", "--volume", "v.mrc", "-o", "r.csv"])
    assert check["d_min_A"] is None  # the preset's (generic without --preset)
    assert {name: check[name] for name in REVIEW_SETTINGS} == \
        {name: getattr(ReviewParameters(), name) for name in REVIEW_SETTINGS}
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["curate-check", "-h"])
    help_text = " ".join(capsys.readouterr().out.split())
    for p in parameters(ReviewParameters):
        assert " ".join(p.help.split()) in help_text, p.name
    args = parser.parse_args(["curate-check", "a.xyz", "--volume", "v.mrc", "-o", "r.csv",
                              "--min-distance", "2.0", "--non-atom-level", "0.4",
                              "--isolation", "6", "--smooth-sigma", "0", "--border", "3.5",
                              "--support", "4"])
    from napari_aet.cli.curate_check import review_settings

    assert review_settings(args) == ReviewParameters(d_min_A=2.0, non_atom_level=0.4,
                                                     isolation_A=6.0, smooth_sigma_A=0.0,
                                                     border_A=3.5, support_A=4.0)
    from napari_aet.cli import main

    rc = main(["curate-check", "a.xyz", "--volume", "v.mrc", "-o", "r.csv", "--border", "-1"])
    assert rc == 2 and "--border must be >= 0" in capsys.readouterr().err


# --- the widgets and the project files ----------------------------------------------------------

def _spin_range(widget, p, nullable):
    lo = widget.minimum() + (widget.singleStep() if nullable else 0)
    return lo, widget.maximum()


def _assert_form_matches(form, expected):
    """Every generated input: range, suffix, tooltip and value as the field describes."""
    for p in form.parameters:
        widget, nullable = form[p.name], form.nullable[p.name]
        if hasattr(widget, "maximum"):
            lo, hi = _spin_range(widget, p, nullable)
            assert lo == pytest.approx(-1e12 if p.min is None else p.min), p.name
            assert hi == pytest.approx(1e12 if p.max is None else p.max), p.name
        if hasattr(widget, "count") and p.choices is not None:
            items = [widget.itemText(i) for i in range(widget.count())]
            assert items == (["auto"] if nullable else []) + list(p.choices), p.name
        assert p.help in widget.toolTip() or not widget.isEnabled(), p.name
    values = form.values_dict()
    for name, value in expected.items():
        if isinstance(value, float):
            assert values[name] == pytest.approx(value), name
        else:
            assert values[name] == value, name


def test_widget_forms_show_the_fields_defaults_and_ranges(make_napari_viewer):
    from napari_aet.widgets.align import AlignWidget
    from napari_aet.widgets.analyse import AnalyseWidget
    from napari_aet.widgets.curate import CurateWidget
    from napari_aet.widgets.reconstruct import ReconstructWidget
    from napari_aet.widgets.trace import TraceWidget

    viewer = make_napari_viewer()
    align = AlignWidget(viewer)
    _assert_form_matches(align.align_params, vars(AlignParameters()))
    assert align.align_params["tilt_axis_deg"].minimum() == -180  # not the old +-45 deg
    _assert_form_matches(align.preprocess_params,
                         {k: getattr(PreprocessParameters(), k) for k in align.preprocess_params.inputs})
    recon = ReconstructWidget(viewer)
    _assert_form_matches(recon.params, {})
    # the form shows the method's own iterations and step: the same reconstruction
    assert ReconstructParameters(**vars(recon.params.values())).options() == \
        ReconstructParameters().options()
    recon.params["method"].setCurrentText("sirt")
    recon.params["iterations"].setValue(0)  # below 1: "auto", the method's own
    assert recon.params["iterations"].text() == "auto" and recon.params.values().iterations is None
    assert recon.parameters()["iterations"] == RECONSTRUCT_DEFAULTS["sirt"][0]
    trace = TraceWidget(viewer)
    generic = TraceParameters.from_preset("generic")
    _assert_form_matches(trace.params, {k: getattr(generic, k) for k in MAIN_PARAMETERS})
    assert trace.params["fit_radius_A"].maximum() == 5.0  # as the configuration (not 3 A)
    trace.preset.setCurrentText("ZrO2")
    zro2 = TraceParameters.from_preset("ZrO2")
    _assert_form_matches(trace.params, {k: getattr(zro2, k) for k in MAIN_PARAMETERS})
    analyse = AnalyseWidget(viewer)
    _assert_form_matches(analyse.params, {"first_shell_A": None, "r_void_A": None, "elements": None})
    analyse.params["r_void_A"].setValue(2.5)
    assert analyse.parameters().r_void_A == 2.5
    curate = CurateWidget(viewer)
    d_min = parameter_map(TraceParameters)["min_distance_A"]
    assert (curate.d_min.minimum(), curate.d_min.maximum()) == (d_min.min, d_min.max)
    assert curate.d_min.value() == pytest.approx(generic.min_distance_A)
    review_d_min = parameter_map(ReviewParameters)["d_min_A"]
    assert (curate.d_min.minimum(), curate.d_min.maximum()) == (review_d_min.min, review_d_min.max)
    from napari_aet.widgets.curate import REVIEW_ROWS

    assert set(REVIEW_ROWS) <= set(REVIEW_SETTINGS) and "border_A" in REVIEW_ROWS
    _assert_form_matches(curate.review_params,
                         {name: getattr(ReviewParameters(), name) for name in REVIEW_ROWS})
    assert list(curate.review_params.inputs) == list(REVIEW_ROWS)


def test_project_files_keep_parameters_by_field_name(make_napari_viewer, tmp_path):
    from napari_aet.widgets.align import AlignWidget
    from napari_aet.widgets.project import open_in_viewer, save_viewer
    from napari_aet.widgets.reconstruct import ReconstructWidget
    from napari_aet.widgets.trace import TraceWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4), np.float32), name="image")
    align, recon, trace = AlignWidget(viewer), ReconstructWidget(viewer), TraceWidget(viewer)
    for w in (align, recon, trace):
        viewer.window.add_dock_widget(w)
    align.align_params["tilt_axis_deg"].setValue(-150.0)
    align.preprocess_params["background"].setCurrentText("off")
    recon.params["method"].setCurrentText("sirt")
    recon.params["iterations"].setValue(33)
    trace.preset.setCurrentText("ZrO2")
    trace.params["fit_radius_A"].setValue(4.5)
    trace.params["method"].setCurrentText("gaussian")
    saved = {type(w).__name__: w.form_values() for w in (align, recon, trace)}
    assert saved["AlignWidget"]["tilt_axis_deg"] == -150.0
    assert saved["TraceWidget"]["fit_radius_A"] == 4.5 and "Fit radius" not in saved["TraceWidget"]
    path = save_viewer(viewer, tmp_path / "p")

    fresh = make_napari_viewer()
    widgets = AlignWidget(fresh), ReconstructWidget(fresh), TraceWidget(fresh)
    for w in widgets:
        fresh.window.add_dock_widget(w)
    open_in_viewer(fresh, path)
    for w in widgets:
        assert json.loads(json.dumps(w.form_values())) == json.loads(json.dumps(
            saved[type(w).__name__])), type(w).__name__
    assert widgets[1].params.values().iterations == 33
    assert widgets[2].params.values().min_distance_A == 2.0  # ZrO2's, restored with the preset


def test_older_project_entries_keyed_by_row_label_restore_what_matches(make_napari_viewer):
    from napari_aet.widgets.align import AlignWidget
    from napari_aet.widgets.trace import TraceWidget

    viewer = make_napari_viewer()
    trace, align = TraceWidget(viewer), AlignWidget(viewer)
    # the rows of the hand-built forms: labels, "label[i]" for rows with several inputs
    trace.set_form_values({"Material preset": "SiO2", "Min. distance": 1.7, "Refinement": "gaussian",
                           "L1 template test": True, "Fit radius": "wide", "Gone row": 3})
    values = trace.params.values()
    assert values.min_distance_A == 1.7 and values.method == "gaussian" and values.template_test
    assert values.fit_radius_A == TraceParameters.from_preset("SiO2").fit_radius_A  # a str: left
    align.set_form_values({"denoise": "tv", "tilt axis[1]": 12.0, "projection matching[0]": 1,
                           "background[0]": "on"})
    assert align.preprocess_params.values().denoise == "tv"
    assert align.align_params.values() == AlignParameters()  # the old composite rows: ignored


def test_row_labels_restore_whatever_their_case(make_napari_viewer):
    """Rows are labelled in napari's lower case now; project files written with the former
    Title-case labels still restore (generated and hand-built rows alike)."""
    from napari_aet.widgets.curate import CurateWidget
    from napari_aet.widgets.trace import TraceWidget

    viewer = make_napari_viewer()
    trace, curate = TraceWidget(viewer), CurateWidget(viewer)
    trace.set_form_values({"Material preset": "Pt", "Threshold fraction": 0.2})
    assert trace.preset.currentText() == "Pt"
    assert trace.params.values().threshold_fraction == pytest.approx(0.2)
    curate.set_form_values({"Snap radius": 1.7, "Slab +-": 2.5})
    assert curate.snap_radius.value() == pytest.approx(1.7)
    assert "snap radius" in curate.form_values()


def test_curate_review_settings_round_trip_a_project(make_napari_viewer, tmp_path):
    from napari_aet.widgets.curate import CurateWidget
    from napari_aet.widgets.project import open_in_viewer, save_viewer

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4), np.float32), name="image")
    curate = CurateWidget(viewer)
    viewer.window.add_dock_widget(curate)
    curate.review_params["border_A"].setValue(3.5)
    curate.review_params["isolation_A"].setValue(6.0)
    curate.review_params["smooth_sigma_A"].setValue(0.0)
    curate.d_min.setValue(1.7)
    saved = curate.form_values()
    assert (saved["border_A"], saved["isolation_A"], saved["support_A"]) == (3.5, 6.0, None)
    path = save_viewer(viewer, tmp_path / "p")

    fresh = make_napari_viewer()
    restored = CurateWidget(fresh)
    fresh.window.add_dock_widget(restored)
    assert restored.review_params.values() == ReviewParameters()
    open_in_viewer(fresh, path)
    assert restored.review_params.values() == ReviewParameters(
        isolation_A=6.0, smooth_sigma_A=0.0, border_A=3.5)
    assert restored.d_min.value() == pytest.approx(1.7)
    assert json.loads(json.dumps(restored.form_values())) == json.loads(json.dumps(saved))
