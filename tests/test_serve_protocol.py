"""The served model's request options and the backend stub's library path, without a server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from yolov6_sdk.errors import ConfigError
from yolov6_sdk.serve.interpreter import libpython_folder, prepare_stub_environment
from yolov6_sdk.serve.protocol import RequestOptions, parse_options


def test_options_arrive_as_numbers_or_strings_and_round_trip() -> None:
    options = RequestOptions(conf=0.4, iou=0.6, classes=(0, 2))
    assert parse_options(options.as_parameters(), num_classes=3) == options
    assert parse_options({"conf": 0.5, "classes": 1}, num_classes=3) == RequestOptions(conf=0.5, classes=(1,))
    assert parse_options(None, num_classes=3) == RequestOptions()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"color": "red"}, r"unknown option\(s\) \['color'\]; this model takes \['conf', 'iou', 'classes'\]"),
        ({"conf": "1.5"}, r"option conf must be a number in 0\.\.1, got '1\.5'"),
        ({"iou": True}, "option iou must be a number"),
        ({"conf": "nan"}, "option conf must be a number"),
        ({"classes": "0,7"}, r"class ids in 0\.\.2"),
        ({"classes": "cat"}, "comma-separated"),
    ],
)
def test_bad_options_are_refused_naming_the_option(parameters: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options(parameters, num_classes=3)


def test_stub_library_path_starts_with_this_interpreters_libpython() -> None:
    folder = libpython_folder()
    assert (folder / f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0").is_file()
    env = {"LD_LIBRARY_PATH": f"/opt/x:{folder}"}
    assert prepare_stub_environment(env) == f"{folder}:/opt/x"
    assert prepare_stub_environment(env) == f"{folder}:/opt/x"  # once, however often it is called
    assert Path(prepare_stub_environment({}).split(":")[0]) == folder
