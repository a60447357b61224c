"""`tureen config check/show` and `tureen serve` facing wrong settings: one line per wrong
field, exit 2, never a traceback (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def tureen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUREEN_")}
    return subprocess.run(
        [sys.executable, "-m", "tureen.supervisor.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
    )


def test_config_check_accepts_a_good_file_and_lists_every_fault_of_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('workers = 2\nworker_timeout = 5\nmetrics_listen = "off"\n')
    result = tureen("config", "check", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text('workers = "4"\npin_workers = "no"\n')
    result = tureen("config", "check", str(bad))
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"{bad}: workers must be an integer, got '4' (str)" in result.stderr
    assert f"{bad}: pin_workers must be a boolean (true/false), got 'no' (str)" in result.stderr

    ranged = tmp_path / "ranged.toml"
    ranged.write_text('rtc_min_port = 50000\nrtc_max_port = 40000\nlog_level = "chatty"\n')
    result = tureen("config", "check", str(ranged))
    assert result.returncode == 2 and "rtc port range 50000-40000 is invalid" in result.stderr
    assert "log_level must be one of" in result.stderr


def test_serve_refuses_wrong_values_from_file_env_and_flags_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('workers = "4"\n')
    for args, env, message in (
        (["--config", str(bad)], {}, "workers must be an integer, got '4'"),
        ([], {"TUREEN_MAX_ROOMS": "lots"}, "TUREEN_MAX_ROOMS='lots': max_rooms must be an integer"),
        ([], {"TUREEN_PIN_WORKERS": "maybe"}, "TUREEN_PIN_WORKERS"),
        (["--workers", "-3"], {}, "workers must be 0..1024"),
        (["--metrics-listen", "everywhere"], {}, "metrics_listen must be HOST:PORT"),
    ):
        result = tureen("serve", *args, env=env)
        assert result.returncode == 2, (args, env, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_config_show_tells_each_value_and_its_source(tmp_path: Path) -> None:
    path = tmp_path / "tureen.toml"
    path.write_text("workers = 3\n")
    result = tureen("config", "show", "--config", str(path), "--json", env={"TUREEN_PIN_WORKERS": "no"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["workers"] == {"value": 3, "source": "file"}
    assert shown["pin_workers"] == {"value": False, "source": "env"}
    assert shown["metrics_listen"] == {"value": "127.0.0.1:9477", "source": "default"}
    text = tureen("config", "show", env={"TUREEN_WORKERS": "2"})
    line = next(x for x in text.stdout.splitlines() if x.startswith("workers "))
    assert line.split() == ["workers", "2", "env"]


def test_serve_help_shows_each_default_and_environment_variable() -> None:
    result = tureen("serve", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    for var in ("TUREEN_WORKERS", "TUREEN_CONTROL_ENDPOINT", "TUREEN_PIN_WORKERS", "TUREEN_METRICS_LISTEN"):
        assert var in result.stdout, var
    assert "127.0.0.1:9477" in result.stdout and "tcp://127.0.0.1:4477" in result.stdout
