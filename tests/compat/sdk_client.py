"""Drive Candor with a real, unmodified analytics SDK.

usage: sdk_client.py segment|rudder HOST WRITE_KEY PREFIX ANON_ID...

For each anonymous id it sends three track events, a page and an identify, with
message ids PREFIX-ANON-N, flushes, and exits non-zero if the SDK reported any error.
"""
import sys

sdk, host, write_key, prefix, *anon_ids = sys.argv[1:]
errors = []


def on_error(error, items):
    errors.append(repr(error))


if sdk == "segment":
    import segment.analytics as analytics

    analytics.write_key = write_key
    analytics.host = host
elif sdk == "rudder":
    import rudderstack.analytics as analytics

    analytics.write_key = write_key
    analytics.dataPlaneUrl = host
    analytics.gzip = True  # the default; stated so the test's intent is plain
else:
    sys.exit(f"unknown sdk {sdk}")

analytics.on_error = on_error
analytics.max_retries = 1

for anon in anon_ids:
    for n in range(3):
        analytics.track(anonymous_id=anon, event="App Session", properties={"app": "FitTrack", "n": n},
                        message_id=f"{prefix}-{anon}-{n}")
    analytics.page(anonymous_id=anon, name="sports", properties={"category": "sports"},
                   message_id=f"{prefix}-{anon}-page")
    analytics.identify(anonymous_id=anon, traits={"shoe_size_eu": 42}, message_id=f"{prefix}-{anon}-identify")

analytics.flush()
analytics.shutdown()
if errors:
    sys.exit("SDK reported errors: " + "; ".join(errors))
print("sent")
