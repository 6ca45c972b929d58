"""Pure numpy/scipy science: geometry, simulation, reconstruction, tracing, analysis. No Qt, no napari."""
