"""Dock widgets: thin Qt front-ends that read layers, start a worker and write layers."""
