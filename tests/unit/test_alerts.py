"""The Prometheus alerting rules in deploy/prometheus: valid, and raising the right alerts."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta

import pytest

from releng_hardware.core.problems import PROBLEMS
from tests.conftest import NOW, ROOT, require, seen

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from Debian's prometheus package (scripts/setup installs it); CI must have it."""
    path = shutil.which("promtool")
    require(path is not None, "promtool is not installed", "CI must check the alerting rules",
            "`scripts/setup --browser` installs Debian's prometheus package, which has it")
    assert path is not None
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_alerting_rules_are_valid(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerting_rules_raise_the_expected_alerts(promtool: str) -> None:
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("ci, outcome", [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="promtool is not installed"):
        require(False, "promtool is not installed", "CI must check it", "install it")
    require(True, "never said", "never", "never")


def _heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_to_a_section_of_the_runbook() -> None:
    links = re.findall(r"runbook_url: (\S+)", RULES.read_text())
    assert len(links) == RULES.read_text().count("- alert:")
    for link in links:
        path, _, anchor = link.partition("#")
        document = ROOT / path
        assert document.exists(), f"{link}: no such file"
        anchors = {_heading_anchor(line.lstrip("#")) for line in document.read_text().splitlines()
                   if line.startswith("#")}
        assert anchor in anchors, f"{link}: {path} has no such heading"


def test_the_rules_use_only_metrics_the_service_exports(client, store):
    seen(store, "t-linux64-ms-100", ago=timedelta(hours=9), state="exception",
         reason="claim-expired")
    store.listener_heartbeat(NOW)
    store.taskcluster_polled(NOW - timedelta(minutes=1))  # its age gauge exists once polled
    exported = client.get("/metrics").get_data(as_text=True)
    names = set(re.findall(r"^(releng_hardware_\w+)[{ ]", exported, re.MULTILINE))
    used = set(re.findall(r"\breleng_hardware_\w+", RULES.read_text()))
    assert used and used <= names, f"alerts.yml uses metrics /metrics lacks: {used - names}"
    # the problem labels the rules match on are codes the service gives
    for code in re.findall(r'problem=~"([^"]+)"', RULES.read_text()):
        assert set(code.split("|")) <= set(PROBLEMS)
