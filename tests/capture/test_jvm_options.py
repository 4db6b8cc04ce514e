"""PROJECTORS_CAPTURE_JVM_OPTIONS: Debezium's JVM starts with them (after -Xrs), and a value that is
not a list of options stops the process at start, naming the setting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from projectors.settings import load_settings
from projectors.settings_base import SettingsError

# The JVM capture starts first: the connector's own validation of its properties (capture runs it
# before its engine; `projectors config check` runs it alone). PostgreSQL is not needed: the
# connection test fails and is reported apart.
PROBE = """
import json, jpype
from projectors.capture.validation import check_connector
from projectors.settings import load_settings
settings = load_settings({"PROJECTORS_CAPTURE_JVM_OPTIONS": %r, "PROJECTORS_PG_PORT": "1"})
check_connector(settings)
runtime = jpype.JClass("java.lang.management.ManagementFactory").getRuntimeMXBean()
print(json.dumps({"args": [str(a) for a in runtime.getInputArguments()],
                  "max": int(jpype.JClass("java.lang.Runtime").getRuntime().maxMemory())}))
"""


def test_the_capture_jvm_starts_with_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % "-XX:TieredStopAtLevel=1  -Xmx300m"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jvm = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"-Xrs", "-XX:TieredStopAtLevel=1", "-Xmx300m"} <= set(jvm["args"]), jvm
    assert jvm["args"].index("-Xmx300m") > jvm["args"].index("-Xmx2g"), jvm  # ours after the engine's
    assert jvm["max"] <= 300 * 1024 * 1024, jvm  # the later -Xmx won


@pytest.mark.parametrize("value", ["Xmx1g", "-Xmx1g TieredStopAtLevel=1"])
def test_a_word_that_is_not_an_option_is_refused_with_the_settings_name(value: str) -> None:
    with pytest.raises(SettingsError, match="PROJECTORS_CAPTURE_JVM_OPTIONS") as refused:
        load_settings({"PROJECTORS_CAPTURE_JVM_OPTIONS": value})
    assert "starts with '-'" in str(refused.value)


def test_no_options_is_the_engines_defaults_and_minus_xrs() -> None:
    assert load_settings({}).capture.jvm_opts == ["-Xrs"]
    assert load_settings({"PROJECTORS_CAPTURE_JVM_OPTIONS": " -Xmx1g "}).capture.jvm_opts == ["-Xrs", "-Xmx1g"]
