"""The whole pipeline headless: configuration checking and the run of every data set."""

from napari_aet.pipeline.config import ConfigError, RunConfig, load_config, parse_config
from napari_aet.pipeline.runner import run_pipeline

__all__ = ["ConfigError", "RunConfig", "load_config", "parse_config", "run_pipeline"]
