"""``qc diagnose``: the sub-command registers its options; an unknown model is a one-line error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from qc.diagnose.cli import add_parser, run
from qc.errors import ConfigError
from tests.models import tiny_project


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qc")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_diagnose_parses_models_images_and_report_dir() -> None:
    args = _parser().parse_args(["diagnose", "a", "b", "--models", "m.yaml", "--images", "2", "--report-dir", "r"])
    assert (args.model, args.models, args.images, args.report_dir) == (["a", "b"], "m.yaml", 2, "r")
    assert args.func is run


def test_an_unknown_model_names_the_file_and_the_models(tmp_path: Path) -> None:
    path = tiny_project(tmp_path, [{"name": "tiny"}])
    args = _parser().parse_args(["diagnose", "nope", "--models", str(path)])
    with pytest.raises(ConfigError, match=r"models.yaml: no model named \['nope'\] \(models: tiny\)"):
        run(args)
