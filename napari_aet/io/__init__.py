"""Readers and writers: tilt series, angles, volumes and atom coordinates."""
