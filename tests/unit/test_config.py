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
