"""Run the whole pipeline headless: preprocess, align, reconstruct, trace, analyse, export.

Two forms:

  napari-aet run CONFIG.toml [-o DIR]           every [[dataset]] of a configuration
  napari-aet run RUN.json [-o DIR]              repeat a previous run exactly
  napari-aet run TILT --angles ANGLES --pixel-size A --preset NAME -o DIR

The configuration is checked completely, and every input opened, before any work starts;
all problems are reported together. Each data set writes aligned.mrc, alignment.csv,
volume.mrc (with angles_refined.csv when [reconstruct] refine_angles_cycles > 0),
atoms.xyz/.extxyz/.csv/.mat, analysis/, figures/, project.aet.h5 (open it in
napari to curate) and run.json (parameters, input checksums, versions, timings, metrics).
Several data sets go into DIR/<name>/ with a summary in DIR/batch.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError

COMMAND = "run"


def add_arguments(parser):
    from napari_aet.core.presets import preset_names

    parser.add_argument("source", metavar="CONFIG|TILT",
                        help="a configuration (.toml), a previous run.json, or a tilt series")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="output folder (default: the configuration's 'output')")
    parser.add_argument("--angles", default=None, metavar="ANGLES",
                        help="tilt angles file (degrees) for a tilt series given directly")
    parser.add_argument("--pixel-size", default=None, metavar="A",
                        help="pixel size: Angstrom, or with a unit ('35 pm', '0.035 nm')")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help=f"material preset: {', '.join(preset_names())}")
    parser.add_argument("--truth", default=None, metavar="ATOMS",
                        help="known atoms (e.g. a simulation's truth_atoms.xyz): metrics in run.json")
    parser.add_argument("--iterations", type=int, default=None, metavar="N",
                        help="reconstruction iterations (default: the method's)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                        help="reconstruct on Dask: 'local' or a scheduler address")
    parser.add_argument("--check", action="store_true",
                        help="check the configuration and inputs, then stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _pixel_size(text):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # "35 pm": converted and checked with the configuration


def _log(text):
    print(text, file=sys.stderr)


def run(args) -> int:
    from napari_aet.cli._progress import ProgressBar
    from napari_aet.pipeline import config as C
    from napari_aet.pipeline.runner import run_pipeline

    source = Path(args.source)
    is_config = source.suffix.lower() in (".toml", ".json")
    try:
        if is_config:
            for option in ("angles", "pixel_size", "preset", "truth", "iterations"):
                if getattr(args, option) is not None:
                    raise CLIError(f"--{option.replace('_', '-')} is for a tilt series given "
                                   "directly; set it in the configuration instead")
            config = C.load_config(source)
            if args.output:
                config.output = Path(args.output).resolve()
            if args.scheduler:
                config.scheduler = args.scheduler
        else:
            if not args.output:
                raise CLIError("give the output folder with -o DIR")
            config = C.simple_config(source, args.angles, _pixel_size(args.pixel_size),
                                     args.preset, args.output, args.scheduler, args.truth,
                                     args.iterations)
        if args.check:
            C.check_inputs(config)
            print(f"configuration OK: {len(config.datasets)} data set(s) -> {config.output}")
            return 0
        # run_pipeline checks every input before any work (ConfigError, as above)
        records = run_pipeline(config, progress_bar=lambda total, desc: ProgressBar(
            total, desc, args.quiet), log=None if args.quiet else _log)
    except C.ConfigError as exc:
        print(f"napari-aet run: error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in records if r["status"] != "ok"]
    for r in records:
        folder = config.output if len(records) == 1 else config.output / r["dataset"]
        line = f"{r['dataset']}: {r['status']}"
        if r["status"] == "ok":
            counts = r["metrics"]["trace"]["counts"]
            line += f", {sum(counts.values())} atoms ({', '.join(f'{e} {n}' for e, n in counts.items())})"
            score = r["metrics"].get("score")
            if score:
                line += (f", recall {100 * score['recall']:.1f} %, precision "
                         f"{100 * score['precision']:.1f} %, RMSD {100 * score['rmsd_A']:.0f} pm")
            line += f", {r['timings_s']['total']:.0f} s -> {folder}"
        else:
            line += f" at {r['failure']['step']}: {r['failure']['error']}"
        print(line)
    return 1 if failed else 0
