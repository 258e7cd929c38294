"""Drive Candor through a client generated from its own OpenAPI document.

usage: openapi_client.py BASE_URL SERVER_WRITE_KEY ADMIN_TOKEN WORK_DIR

Fetches BASE_URL/openapi.json, generates a Python client from it with
openapi-python-client (nothing in the generated code is edited), and with that client
alone: records consent for a few people, sends a batch of events, reads the consent state
and history, creates an advertiser and asks an insight query. Prints one JSON object
saying what it saw; exits non-zero at the first thing that does not work.
"""
import base64
import importlib
import json
import os
import pathlib
import subprocess
import sys
import urllib.request

base_url, write_key, admin_token, work = sys.argv[1:]
work = pathlib.Path(work)
work.mkdir(parents=True, exist_ok=True)

# 1. The document, as served.
with urllib.request.urlopen(f"{base_url}/openapi.json") as r:
    (work / "openapi.json").write_bytes(r.read())

# 2. The client, generated. The config names the package; nothing else is chosen.
(work / "config.yml").write_text("project_name_override: candor-client\npackage_name_override: candor_client\n")
out = work / "candor-client"
# The generator formats its output with ruff, installed beside it.
env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
generated = subprocess.run(
    [
        sys.executable, "-m", "openapi_python_client", "generate",
        "--path", str(work / "openapi.json"),
        "--config", str(work / "config.yml"),
        "--output-path", str(out),
        "--overwrite",
    ],
    capture_output=True, text=True, env=env,
)
# openapi-python-client skips what it cannot read with a warning: a failure of the
# document here, not a detail. The one exception: a body media type it has no support
# for (text/plain beside JSON, a mail report), where the JSON form is still generated.
log = generated.stdout + generated.stderr
problems = [
    block for block in log.split("WARNING parsing ")[1:]
    if "Unsupported content type" not in block.split("\n\n")[1]
]
if generated.returncode != 0 or problems or "Error" in log:
    sys.exit(f"openapi-python-client:\n{log}")
sys.path.insert(0, str(out))

from candor_client import AuthenticatedClient, Client  # noqa: E402
from candor_client.types import Unset  # noqa: E402


def api(tag, operation):
    return importlib.import_module(f"candor_client.api.{tag}.{operation}")


def models():
    return importlib.import_module("candor_client.models")


def ok(resp, what):
    if resp.status_code // 100 != 2 or resp.parsed is None:
        sys.exit(f"{what}: HTTP {resp.status_code}: {resp.content[:500]!r}")
    return resp.parsed


basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
server = Client(base_url=base_url, headers={"Authorization": basic}, raise_on_unexpected_status=True)
admin = AuthenticatedClient(base_url=base_url, token=admin_token, raise_on_unexpected_status=True)
m = models()
seen = {}

# 3. Consent for three people: two grant analytics and insights, one refuses.
people = ["gen-client-1", "gen-client-2", "gen-client-3"]
for i, anon in enumerate(people):
    choice = m.Choice.GRANT if i < 2 else m.Choice.REFUSE
    body = m.ChoicesBody(
        anonymous_id=anon,
        choices=m.ChoicesBodyChoices.from_dict({"analytics": choice.value, "ads_insights": choice.value}),
    )
    state = ok(api("consent", "post_consent").sync_detailed(client=server, body=body), "post_consent")
    seen.setdefault("receipts", []).append(len(state.receipts) if not isinstance(state.receipts, Unset) else 0)

# 4. A batch of events.
batch = m.BatchRequest.from_dict({
    "batch": [
        {"type": "track", "event": "App Session", "anonymousId": anon, "messageId": f"{anon}-{n}",
         "properties": {"app": "FitTrack", "app_category": "health_fitness"}}
        for anon in people for n in range(2)
    ] + [
        {"type": "identify", "anonymousId": anon, "messageId": f"{anon}-id", "traits": {"age_band": "25-34"},
         "context": {"candor": {"share_in_aggregate": ["age_band"]}}}
        for anon in people
    ]
})
answer = ok(api("ingest", "post_batch").sync_detailed(client=server, body=batch), "post_batch")
seen["batch"] = answer.to_dict()

# 5. The state and the history of the first person.
state = ok(api("consent", "get_consent").sync_detailed(client=server, anonymous_id=people[0]), "get_consent")
seen["state"] = {p.purpose: p.status for p in state.purposes}
history = ok(api("consent", "get_consent_history").sync_detailed(client=server, anonymous_id=people[0]), "get_consent_history")
seen["history"] = [r.record.status for r in history.records]

# 6. An advertiser (through the admin API) asks an insight query.
created = ok(
    api("admin", "post_admin_advertisers").sync_detailed(
        client=admin,
        body=m.NewAdvertiser.from_dict({"id": "gen-client-adv", "name": "Generated client", "budget": {"epsilon": 5.0}}),
    ),
    "post_admin_advertisers",
)
advertiser = AuthenticatedClient(base_url=base_url, token=created.api_key, raise_on_unexpected_status=True)
query = m.InsightQuery.from_dict({"metric": "count", "feature": "app_usage", "epsilon": 0.5})
result = ok(api("insights", "post_insights_query").sync_detailed(client=advertiser, body=query), "post_insights_query")
seen["insight"] = result.to_dict()

print(json.dumps(seen, default=str))
