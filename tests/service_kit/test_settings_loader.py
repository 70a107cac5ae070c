"""One settings loader for the DMU and the TSM: defaults < file < env < flags, unknown keys refused in every layer."""

from __future__ import annotations

import pytest

from dmu_service.config import load_settings as load_dmu
from heurimentor.service_kit.settings import SettingsError
from tsm_service.config import load_settings as load_tsm


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("HEURIMENTOR_DMU_", "HEURIMENTOR_TSM_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("load", "prefix", "default_port"), [(load_dmu, "HEURIMENTOR_DMU_", 8700), (load_tsm, "HEURIMENTOR_TSM_", 8081)])
def test_precedence_defaults_file_env_flags(load, prefix, default_port, tmp_path, monkeypatch) -> None:
    config = tmp_path / "service.yaml"
    config.write_text("port: 9001\nhost: 0.0.0.0\nlog_level: DEBUG\n")
    assert load().port == default_port
    assert load(config).port == 9001
    monkeypatch.setenv(prefix + "PORT", "9002")
    from_env = load(config)
    assert (from_env.port, from_env.host, from_env.log_level) == (9002, "0.0.0.0", "DEBUG")
    assert load(config, port=9003, host=None).port == 9003  # None = flag not given
    monkeypatch.setenv(prefix + "CONFIG_FILE", str(config))
    assert load().host == "0.0.0.0"


def test_a_typo_in_a_dmu_config_file_is_an_error_naming_it(tmp_path) -> None:
    config = tmp_path / "dmu.yaml"
    config.write_text("windw: 3\nport: 9001\n")
    with pytest.raises(SettingsError, match=r"dmu.yaml: unknown setting 'windw'"):
        load_dmu(config)
    config.write_text("max_wait: 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'max_wait'; did you mean 'max_wait_s'"):
        load_dmu(config)


def test_a_typo_in_a_nested_tsm_setting_is_an_error(tmp_path) -> None:
    config = tmp_path / "tsm.yaml"
    config.write_text("detectors:\n  spike:\n    windw: 30\n")
    with pytest.raises(ValueError, match=r"detectors\.spike\.windw"):
        load_tsm(config)
    config.write_text("detectors:\n  spike:\n    factor: 3\n")
    assert load_tsm(config).detectors.spike.factor == 3


def test_unknown_environment_variables_with_the_prefix_are_errors(monkeypatch) -> None:
    monkeypatch.setenv("HEURIMENTOR_DMU_PROT", "9001")
    with pytest.raises(SettingsError, match=r"HEURIMENTOR_DMU_PROT: unknown setting 'prot'; did you mean 'port'"):
        load_dmu()
    monkeypatch.delenv("HEURIMENTOR_DMU_PROT")
    monkeypatch.setenv("HEURIMENTOR_TSM_DETECTORS__SPIKE__WINDW", "3")
    with pytest.raises(ValueError, match="windw"):
        load_tsm()
    monkeypatch.delenv("HEURIMENTOR_TSM_DETECTORS__SPIKE__WINDW")
    monkeypatch.setenv("HEURIMENTOR_TSM_DETECTORS__SPIKE__WINDOW", "30")
    assert load_tsm().detectors.spike.window == 30


def test_unreadable_or_non_mapping_files_are_errors(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n")
    for load in (load_dmu, load_tsm):
        with pytest.raises(SettingsError, match="bad.yaml: expected a mapping"):
            load(bad)
        with pytest.raises(SettingsError, match="missing.yaml: cannot read"):
            load(tmp_path / "missing.yaml")
