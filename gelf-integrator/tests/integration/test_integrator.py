"""gelf-integrator/README.md's deploy commands, run as written, against a real controller.

No Graylog is reachable from CI: the API URL points at a closed port, so provisioning must
wait (retrying each hook) while the endpoint is already validated and the token secret read.
"""

from __future__ import annotations

from pathlib import Path

import jubilant

APP = "graylog"
GELF_URL = "http://graylog.example.com:12201/gelf"
API_URL = "http://127.0.0.1:9/api"  # nothing listens there
TOKEN = "integration-test-token-3c1d"


def workload_message(juju: jubilant.Juju) -> str:
    return juju.status().apps[APP].units[f"{APP}/0"].workload_status.message


def test_1_deploy_with_config(juju: jubilant.Juju, integrator_charm: Path):
    juju.deploy(integrator_charm, APP, config={"gelf_url": GELF_URL})

    juju.wait(lambda s: jubilant.all_active(s, APP))
    assert workload_message(juju) == "alerts to graylog.example.com:12201; 0 requirer apps"


def test_2_add_and_grant_the_token_secret_then_point_the_secret_option_at_it(juju: jubilant.Juju):
    uri = juju.add_secret("graylog-api", {"token": TOKEN})
    juju.grant_secret("graylog-api", APP)
    juju.config(APP, {"api_url": API_URL, "api_token_secret": str(uri)})

    juju.wait(lambda s: jubilant.all_waiting(s, APP))
    assert workload_message(juju).startswith("api_url: Graylog API: ")
    assert TOKEN not in workload_message(juju)
    assert TOKEN not in juju.debug_log(limit=1000)


def test_3_an_ungranted_secret_says_how_to_grant_it(juju: jubilant.Juju):
    uri = juju.add_secret("not-granted", {"token": TOKEN})
    juju.config(APP, {"api_token_secret": str(uri)})

    juju.wait(lambda s: jubilant.all_blocked(s, APP))
    assert workload_message(juju) == (
        f"api_token_secret: cannot read the secret; run juju grant-secret <secret> {APP}"
    )
    juju.config(APP, reset=["api_url", "api_token_secret"])
    juju.wait(lambda s: jubilant.all_active(s, APP))
