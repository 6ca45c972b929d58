"""Open napari with the simulated Zr-ZrO2 tilt series and every napari-aet dock widget."""

from __future__ import annotations

COMMAND = "demo"


def add_arguments(parser):
    parser.add_argument("--sample", choices=["zr", "silica"], default="zr",
                        help="which simulated sample to load (default: zr)")
    parser.add_argument("--screenshot", metavar="PNG", default=None,
                        help="save a screenshot of the window and exit (for docs and checks)")


def dock_all_widgets(viewer):
    """Dock every widget of the manifest; returns {display name: (dock widget, widget)}."""
    import npe2

    manifest = npe2.PluginManager.instance().get_manifest("napari-aet")
    docked = {}
    for contribution in manifest.contributions.widgets or []:
        dock, widget = viewer.window.add_plugin_dock_widget("napari-aet", contribution.display_name,
                                                            tabify=True)
        docked[contribution.display_name] = (dock, widget)
    return docked


def run(args) -> int:
    import napari

    from napari_aet.layers import watch_axes

    viewer = napari.Viewer(title="napari-aet demo")
    viewer.window.resize(1500, 950)
    # The tilt series only: its true atoms (File > Open Sample) belong with a volume, not
    # with the (angle, y, x) stack, whose slider would otherwise span Angstrom too.
    viewer.open_sample("napari-aet", args.sample)
    watch_axes(viewer)  # the series' slider reads "tilt", not napari's "-3"
    docked = dock_all_widgets(viewer)
    if docked:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        next(iter(docked.values()))[0].raise_()  # the first step: align
        QApplication.processEvents()
        viewer.reset_view()  # the docks narrowed the canvas: fit the data to it again
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0
