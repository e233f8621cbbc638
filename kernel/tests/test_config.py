"""Orthanc's configuration format: comments, folders, defaults, environment overrides."""

from __future__ import annotations

import json
import logging

import pytest

from isengard.config import KERNEL_DEFAULTS, Config, ConfigError, parse_json_with_comments, sample_configuration


def test_comments_and_trailing_commas_are_accepted():
    text = """
    {
      // a line comment, with "quotes" inside
      "Name" : "A // not a comment",   /* a block
      comment */ "HttpPort" : 8043,
      "DicomModalities" : { "pacs" : [ "PACS", "127.0.0.1", 104 ], },
    }
    """
    values = parse_json_with_comments(text, "test")
    assert values == {
        "Name": "A // not a comment",
        "HttpPort": 8043,
        "DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
    }


def test_invalid_json_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "Name": "x",\n  "HttpPort": \n}')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON .* line 4"):
        Config.load(bad, environ={})


def test_defaults_are_orthancs():
    config = Config.load(None, environ={})
    assert config.int("HttpPort") == 8042
    assert config.int("DicomPort") == 4242
    assert config.str("DicomAet") == "ORTHANC"
    assert config.bool("RemoteAccessAllowed") is False
    assert config.bool("StorageCompression") is False
    assert config.int("StableAge") == 60
    assert config.bool("OverwriteInstances") is False


def test_folder_of_files_is_merged_and_duplicates_refused(tmp_path):
    (tmp_path / "a.json").write_text('{"Name": "Folder"}')
    (tmp_path / "b.json").write_text('{"HttpPort": 9000}')
    (tmp_path / "notes.txt").write_text("ignored")
    config = Config.load(tmp_path, environ={})
    assert config["Name"] == "Folder" and config["HttpPort"] == 9000
    (tmp_path / "c.json").write_text('{"Name": "Twice"}')
    with pytest.raises(ConfigError, match="already set"):
        Config.load(tmp_path, environ={})


def test_environment_overrides_files(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"DicomAet": "FILE", "PostgreSQL": {"Host": "db"}}')
    environ = {
        "ORTHANC__DICOM_AET": "ENV",
        "ORTHANC__HTTP_PORT": "9999",
        "ORTHANC__REMOTE_ACCESS_ALLOWED": "true",
        "ORTHANC__POSTGRESQL__PORT": "6543",
        "ORTHANC__REGISTERED_USERS": '{"alice": "secret"}',
        "UNRELATED": "1",
    }
    config = Config.load(path, environ=environ)
    assert config["DicomAet"] == "ENV"
    assert config.int("HttpPort") == 9999
    assert config.bool("RemoteAccessAllowed") is True
    assert config["PostgreSQL"] == {"Host": "db", "Port": 6543}
    assert config.dict("RegisteredUsers") == {"alice": "secret"}
    assert {"DicomAet", "HttpPort", "RemoteAccessAllowed"} <= config.explicit
    assert "StableAge" not in config.explicit


def test_unknown_options_are_logged_not_fatal(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text('{"NoSuchOption": 1, "Name": "x"}')
    with caplog.at_level(logging.WARNING, logger="isengard.config"):
        config = Config.load(path, environ={})
    assert config["Name"] == "x"
    assert [r.getMessage() for r in caplog.records] == ["unknown configuration option 'NoSuchOption' is ignored"]


def test_typed_accessors_explain_bad_values():
    config = Config.load(None, environ={}, overrides={"HttpPort": "8042", "StorageCompression": 1})
    with pytest.raises(ConfigError, match="'HttpPort' must be an integer"):
        config.int("HttpPort")
    with pytest.raises(ConfigError, match="'StorageCompression' must be true or false"):
        config.bool("StorageCompression")


def test_relative_paths_are_relative_to_the_configuration(tmp_path):
    path = tmp_path / "conf" / "config.json"
    path.parent.mkdir()
    path.write_text('{"StorageDirectory": "data"}')
    assert Config.load(path, environ={}).path("StorageDirectory") == tmp_path / "conf" / "data"


def test_sample_configuration_reads_back_as_the_defaults(tmp_path):
    text = sample_configuration()
    assert text.count("//") >= len(KERNEL_DEFAULTS)
    assert parse_json_with_comments(text, "sample") == json.loads(json.dumps(KERNEL_DEFAULTS))
