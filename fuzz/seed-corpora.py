#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the test fixtures and configs (run from the repository
root after `cargo build`). Each seed is named by its content's SHA-1, as libFuzzer names
what it finds, so re-running adds nothing twice."""
import glob, hashlib, json, os, subprocess

VENDORS = sorted(os.listdir("mappings"))  # MappingSet::vendors() order (a BTreeMap)


def put(target, data):
    folder = f"fuzz/corpus/{target}"
    os.makedirs(folder, exist_ok=True)
    with open(f"{folder}/{hashlib.sha1(data).hexdigest()}", "wb") as f:
        f.write(data)


for path in sorted(glob.glob("tests/fixtures/**/*", recursive=True)):
    if not os.path.isfile(path) or "/api/" in path or "/docs/" in path:
        continue
    vendor = path.split("/")[2]
    raw = open(path, "rb").read()
    if path.endswith(".txt") and vendor == "oracle-isr":
        url = raw.decode().strip()
        query = url.split("?", 1)[1] if "?" in url else url
        put("webhook_payload", bytes([9]) + query.encode() + b"\0")
        put("webhook_payload", bytes([5]) + b"\0" + query.encode())
        put("decode", bytes([VENDORS.index("oracle-isr")]) + url.encode())
        payload = url.encode()
    elif path.endswith(".json"):
        try:
            json.loads(raw)
        except ValueError:
            continue
        if vendor not in VENDORS or vendor == "oracle-isr":
            continue
        put("webhook_payload", bytes([0]) + b"\0" + raw)
        put("webhook_payload", bytes([2]) + b"\0" + raw)
        put("decode", bytes([VENDORS.index(vendor)]) + raw)
        payload = raw
    else:
        continue
    out = subprocess.run(
        ["target/debug/callgate", "translate", "--from", vendor, "--to", "cloudevents"],
        input=payload, capture_output=True,
    )
    for line in out.stdout.splitlines():
        if line.strip().startswith(b"{"):
            put("render", line.strip())

for path in sorted(glob.glob("config/**/*.yaml", recursive=True)):
    put("config", open(path, "rb").read())
