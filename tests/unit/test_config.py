"""Configuration: the fan-out core setting, from the environment, validated, and what a
worker does when the native core it was told to use is not built."""

from __future__ import annotations

import pytest
from tureen.shared.config import Config, load_config
from tureen.workers import main as worker_main
from tureen.workers import native


def test_fanout_defaults_to_auto_and_reads_the_environment() -> None:
    assert Config().fanout == "auto"
    assert load_config(env={"TUREEN_FANOUT": "python"}).fanout == "python"


def test_an_unknown_fanout_is_refused_with_the_choices() -> None:
    config = Config().updated(fanout="turbo")
    with pytest.raises(ValueError, match="fanout must be one of auto, native, python"):
        config.validate()


def test_without_the_build_auto_falls_back_and_native_refuses(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(native, "_native", None)
    monkeypatch.setattr(native, "WHY_NOT", "tureen.workers._native is not built (test)")
    assert native.make_fanout("auto") is None
    assert native.make_fanout("python") is None
    with pytest.raises(RuntimeError, match="fanout = native, but tureen.workers._native is not built"):
        native.make_fanout("native")
    code = worker_main.main(["--index", "0", "--run-dir", str(tmp_path), "--config", '{"fanout": "native"}'])
    assert code == 2
    assert "fanout = native, but tureen.workers._native is not built" in capsys.readouterr().err



def test_io_uring_can_be_turned_off_for_the_native_core() -> None:
    assert Config().io_uring is True
    assert load_config(env={"TUREEN_IO_URING": "false"}).io_uring is False
    if native.available():
        from tureen.workers.forward import Forwarder

        assert Forwarder(core="native", io_uring=False).dump_fanout()["send"] == "sendmmsg"


def test_a_libsrtp_the_native_core_cannot_call_means_the_python_core(monkeypatch) -> None:
    if not native.available():
        pytest.skip(native.WHY_NOT)
    monkeypatch.setattr(native, "srtp_protect_address", lambda: 0)
    assert native.make_fanout("auto") is None
    with pytest.raises(RuntimeError, match="not libsrtp 2's"):
        native.make_fanout("native")


# --- typed and range-checked settings from every source (issue 13) ---------------------

from tureen.shared.config import ConfigError, parse_listen, resolve  # noqa: E402


def _toml(tmp_path, text: str):
    path = tmp_path / "tureen.toml"
    path.write_text(text)
    return path


def test_a_string_for_an_integer_in_toml_names_the_field_and_the_type(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_toml(tmp_path, 'workers = "4"\n'), env={})
    assert caught.value.errors == [f"{tmp_path / 'tureen.toml'}: workers must be an integer, got '4' (str)"]


def test_a_string_for_a_boolean_in_toml_is_refused_not_taken_as_true(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"pin_workers must be a boolean \(true/false\), got 'no'"):
        load_config(_toml(tmp_path, 'pin_workers = "no"\n'), env={})


def test_every_wrong_setting_of_a_file_is_listed_at_once(tmp_path) -> None:
    path = _toml(tmp_path, 'workers = 1.5\nio_uring = 1\nbogus = true\nfanout = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = "\n".join(caught.value.errors)
    assert len(caught.value.errors) == 4
    for part in ("unknown setting 'bogus'", "workers must be an integer", "io_uring must be a boolean",
                 "fanout must be a string"):
        assert part in text


def test_toml_integers_are_welcome_where_a_float_is_expected(tmp_path) -> None:
    config = load_config(_toml(tmp_path, "worker_timeout = 10\nmax_requests_per_second = 50\n"), env={})
    assert config.worker_timeout == 10.0 and isinstance(config.worker_timeout, float)
    assert config.max_requests_per_second == 50.0


def test_broken_toml_and_a_missing_file_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_toml(tmp_path, "workers = \n"), env={})
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("TUREEN_WORKERS", "four", "TUREEN_WORKERS='four': workers must be an integer"),
        ("TUREEN_PIN_WORKERS", "maybe", "TUREEN_PIN_WORKERS='maybe': pin_workers must be a boolean"),
        ("TUREEN_WORKER_TIMEOUT", "soon", "TUREEN_WORKER_TIMEOUT='soon': worker_timeout must be a number"),
    ],
)
def test_environment_values_are_coerced_with_errors_naming_the_variable(var, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={var: value})


def test_environment_booleans_read_the_usual_words() -> None:
    assert load_config(env={"TUREEN_PIN_WORKERS": "no"}).pin_workers is False
    assert load_config(env={"TUREEN_PIN_WORKERS": " On "}).pin_workers is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": -1}, "workers must be 0..1024"),
        ({"workers": 100_000}, "workers must be 0..1024"),
        ({"worker_timeout": 0.0}, "worker_timeout must be 0.1..600 s"),
        ({"log_level": "loud"}, "log_level must be one of debug, info"),
        ({"log_format": "xml"}, "log_format must be one of text, json"),
        ({"metrics_listen": "9477"}, "metrics_listen must be HOST:PORT"),
        ({"metrics_listen": "example.com:9477"}, "HOST must be an IP address"),
        ({"metrics_listen": "127.0.0.1:70000"}, "metrics_listen must be HOST:PORT"),
        ({"rtc_min_port": 0}, "rtc port range 0-49999 is invalid"),
        ({"worker_slice_us": 50}, "worker_slice_us must be 0 .* or 100..100000"),
        ({"worker_slice_us": 100_001}, "worker_slice_us must be 0 .* or 100..100000"),
        ({"worker_slice_us": -1}, "worker_slice_us must be 0 .* or 100..100000"),
    ],
)
def test_values_out_of_range_are_refused_naming_the_field(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Config().updated(**changes).validate()


def test_updated_refuses_a_value_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError, match="workers must be an integer, got True"):
        Config().updated(workers=True)


def test_metrics_listen_forms() -> None:
    assert parse_listen("off") is None and parse_listen("OFF") is None
    assert parse_listen("127.0.0.1:9477") == ("127.0.0.1", 9477)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:9100") == ("localhost", 9100)
    assert Config().metrics_listen == "127.0.0.1:9477"


def test_resolve_tells_where_each_value_came_from(tmp_path) -> None:
    path = _toml(tmp_path, "workers = 3\nfanout = \"python\"\n")
    config, sources = resolve(path, env={"TUREEN_FANOUT": "native", "TUREEN_MAX_ROOMS": "7"},
                              flags={"max_rooms": 9, "log_level": None})
    assert (config.workers, config.fanout, config.max_rooms, config.log_level) == (3, "native", 9, "info")
    assert sources["workers"] == "file" and sources["fanout"] == "env"
    assert sources["max_rooms"] == "flag" and sources["log_level"] == "default"
