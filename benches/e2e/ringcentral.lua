-- wrk script for benches/e2e.sh: every request is a distinct RingCentral telephony-session
-- notification (tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/...-06.json,
-- compacted), with its own uuid, sessionId, telephonySessionId and party id, so neither peer
-- can short-cut one as a duplicate. RUN_ID (env) keeps runs against one process apart.
-- `done` prints one JSON line: requests, duration (µs), errors, non-2xx, p50 and p99 (µs).

local run = os.getenv("RUN_ID") or tostring(os.time())
local template = '{"uuid":"%s-%d-%d","event":"/restapi/v1.0/account/809646016/extension/809646016/telephony/sessions",'
  .. '"timestamp":"2020-06-23T01:05:52.704Z","subscriptionId":"2461434a-276a-4073-bd26-34089effbad5","ownerId":"809646016",'
  .. '"body":{"sequence":7,"sessionId":"%d%d","telephonySessionId":"s-%s-%d-%d","serverId":"10.13.22.27.TAM",'
  .. '"eventTime":"2020-06-23T01:05:52.656Z","parties":[{"accountId":"809646016","extensionId":"809646016",'
  .. '"id":"p-%s-%d-%d-3","direction":"Inbound","to":{"phoneNumber":"+18003151571","name":"TESTER Babji","extensionId":"809646016"},'
  .. '"from":{"phoneNumber":"+14083388064","name":"DIBYENDU ROY"},"status":{"code":"Proceeding","mobilePickupData":'
  .. '{"ccMailboxes":["809646016"],"to":"#1052016@sip.ringcentral.com:5060","sid":"53205738620264","srvLvl":"-149699523",'
  .. '"srvLvlExt":"406"},"rcc":false},"park":{},"missedCall":false,"standAlone":false,"muted":false}],"origin":{"type":"Call"}}}'
local headers = { ["Content-Type"] = "application/json" }
-- A paced load (benches/e2e.sh fixed): each connection waits this long before each request.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "")
if delay_ms then
  function delay()
    return delay_ms
  end
end

local threads = {}
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

local n = 0
function request()
  n = n + 1
  local t = thread_id or 0
  local body = string.format(template, run, t, n, t, n, run, t, n, run, t, n)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
