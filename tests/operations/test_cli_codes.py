"""What the command line says when it cannot do its job: a verdict is never confused with a failure
to check, and a secret never reaches the output."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from projectors.cli import EXIT_BROKEN_PIPE, EXIT_UNAVAILABLE
from projectors.settings import PostgresSettings
from tests.conftest import cli, cli_into_closed_pipe, free_port

AWKWARD = "s p a c e 'quote\" back\\slash =equals host=evil"


def test_an_awkward_password_is_one_value_of_the_connection_string() -> None:
    info = conninfo_to_dict(PostgresSettings(password=AWKWARD).conninfo())  # type: ignore[arg-type]
    assert info["password"] == AWKWARD and info["host"] == "127.0.0.1" and info["dbname"] == "social"


def test_verify_that_cannot_reach_its_stores_exits_unavailable_with_one_line_and_no_secret() -> None:
    env = {
        "PROJECTORS_PG_PORT": str(free_port()),
        "PROJECTORS_PG_PASSWORD": AWKWARD,
        "PROJECTORS_COSMOS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }
    done = cli("verify", "counters", env=env, timeout=180)
    assert done.returncode == EXIT_UNAVAILABLE, done.stdout + done.stderr  # no verdict, not a data-loss refusal
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("verify: could not check ("), done.stderr
    assert "Traceback" not in done.stderr
    for part in ("s p a c e", "quote", "back\\slash", "=equals"):
        assert part not in done.stdout + done.stderr


def test_infinite_durations_and_a_zero_celebrity_threshold_are_bad_settings() -> None:
    for var, value in (("PROJECTORS_WORKER_SHUTDOWN_GRACE_S", "inf"), ("PROJECTORS_WORKER_RETRY_MAX_S", "nan"),
                       ("PROJECTORS_FEED_CELEBRITY_FOLLOWERS", "0"), ("PROJECTORS_COSMOS_TOMBSTONE_TTL_S", "5")):
        done = cli("config", "check", env={var: value})
        assert done.returncode == 2 and var in done.stderr, (var, done.stdout, done.stderr)


def test_a_sample_is_a_share_of_the_keys_and_a_seed_needs_a_sample() -> None:
    for share in ("0", "150%", "1.5", "some"):
        done = cli("verify", "counters", "--sample", share)
        assert done.returncode == 2 and "--sample" in done.stderr, (share, done.stderr)
    done = cli("verify", "counters", "--seed", "3")
    assert done.returncode == 2 and "--seed" in done.stderr, done.stderr


def test_a_reader_that_went_away_ends_the_command_quietly() -> None:
    done = cli_into_closed_pipe("config", "check", "--no-connector")
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_sample_help_shows_the_defaults_and_how_fan_out_grows() -> None:
    done = cli("sample", "--help")
    text = " ".join(done.stdout.split())  # argparse wraps to the terminal's width
    assert done.returncode == 0, done.stderr
    assert "(default: 30)" in text and "(default: 400)" in text
    assert "quadruples the feed items" in text


def test_a_store_that_does_not_answer_is_one_line_naming_it_never_a_traceback() -> None:
    """rebuild, replay and verify against a Cosmos server that is not there (a closed port): one line
    on stderr that says which store did not answer, exit 69, nothing changed."""
    env = {"PROJECTORS_COSMOS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "PROJECTORS_COSMOS_COUNTERS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "PROJECTORS_PG_PORT": str(free_port()), "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    done = cli("rebuild", "feed", "--force", env=env, timeout=300)
    assert done.returncode == EXIT_UNAVAILABLE, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("projectors: error: the feed store did not answer; nothing was changed ("), done.stderr
